"""A tuning worker: runs trials of one study until the budget is used.

Any number of workers (local processes, or other machines on PostgreSQL storage) can run
this loop against the same study; the trial budget is enforced across all of them.
"""

from __future__ import annotations

import logging
import math
import re
import time
import traceback
from typing import Any

import optuna

from stages import config
from stages.common.search_space import suggest, trial_params
from stages.runtime.errors import UserError
from stages.runtime.signals import Terminated
from stages.schema.tune import TuneParams
from stages.tune import study as st
from stages.tune.progress import TrialProgress
from stages.tune.trial_runs import TrialRun

log = logging.getLogger("reprolab.tune")


class BudgetReached(Exception):
    """Another worker took the last trial slot; this trial is discarded (FAIL, not counted)."""


class TrialFault(Exception):
    """The trial's own fault (NaN/inf loss, out of memory, invalid combination)."""


class StudyStuck(UserError):
    """Trials keep failing for one reason: the study cannot make progress until it is fixed."""


class FailureStreak:
    """Counts trials in a row that failed for the same reason (numbers aside)."""

    def __init__(self, limit: int):
        self.limit, self.reason, self.count = limit, "", 0

    def failed(self, reason: str) -> None:
        """Record a failed trial; raise StudyStuck once `limit` in a row failed alike."""
        key = re.sub(r"\d+(\.\d+)?(e-?\d+)?", "#", reason)
        self.count = self.count + 1 if key == self.reason else 1
        self.reason = key
        if self.count >= self.limit:
            raise StudyStuck(
                f"{self.count} trials in a row failed with: {reason}\n"
                f"the study stops (tune.max_consecutive_failures = {self.limit}); fix the "
                "cause and re-run `dvc repro tune`: finished trials are kept and it resumes"
            )

    def succeeded(self) -> None:
        self.reason, self.count = "", 0


OWN_FAULTS: tuple[type[BaseException], ...] = (TrialFault, MemoryError)
MAX_BLIPS = 8  # ~4 minutes of backoff in all before a storage outage stops the worker


class _NoTracebackForOwnFaults(logging.Filter):
    """Optuna logs every failed trial with its traceback. For an interrupt (the stage says
    "interrupted ... marked KILLED"), a trial's own described fault and a stuck study (the
    stage prints the reason) keep Optuna's one line and drop the stack; tracebacks of
    unexpected errors are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[0] if record.exc_info else None
        if exc is not None and issubclass(exc, QUIET):
            record.exc_info = None
        return True


QUIET = (KeyboardInterrupt, Terminated, UserError, *OWN_FAULTS)
logging.getLogger("optuna.study._optimize").addFilter(_NoTracebackForOwnFaults())


def _storage_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [optuna.exceptions.StorageInternalError]
    try:
        from sqlalchemy.exc import DBAPIError

        errors.append(DBAPIError)
    except ImportError:
        pass
    return tuple(errors)


STORAGE_ERRORS = _storage_errors()


def trial_config(raw: dict[str, Any], tune: TuneParams, point: dict[str, Any]) -> config.Params:
    """`trial_params`, with an invalid combination this trial's own fault."""
    try:
        return trial_params(raw, tune.max_epochs, point)
    except config.ConfigError as exc:
        raise TrialFault(f"sampled params are invalid together: {exc}") from None


def run_worker(
    study: optuna.Study,
    raw: dict[str, Any],
    tune: TuneParams,
    train_trial,
    client: Any,
    experiment_id: str,
    parent_run_id: str,
    deadline: float | None = None,
) -> None:
    """Run trials until the study holds `n_trials` finished trials or `deadline` passes.

    Args:
        train_trial: `(cfg, trial, trial_run) -> list[float]` objective values; it reports
            intermediate values to `trial` and raises optuna.TrialPruned / TrialFault.
    """

    streak = FailureStreak(tune.max_consecutive_failures)

    def objective(trial: optuna.Trial) -> float | list[float]:
        try:
            values = one_trial(trial)
        except OWN_FAULTS as exc:
            streak.failed(f"{type(exc).__name__}: {exc}")
            raise
        except optuna.TrialPruned:
            streak.succeeded()
            raise
        streak.succeeded()
        return values

    def one_trial(trial: optuna.Trial) -> float | list[float]:
        st.mark_trial_owner(trial)
        if not st.budget_left(study, tune, trial.number):
            trial.set_user_attr("fail_reason", "budget reached by other workers; not counted")
            study.stop()
            raise BudgetReached
        point = suggest(trial, tune.search_space)
        run = TrialRun(client, experiment_id, parent_run_id, trial.number)
        run.log_params(point)
        trial.set_user_attr("mlflow_run_id", run.run_id)
        started = time.perf_counter()
        try:
            values = train_trial(trial_config(raw, tune, point), trial, run)
        except optuna.TrialPruned as exc:
            trial.set_user_attr("prune_reason", str(exc) or "pruned by the pruner")
            run.finish("pruned", reason=str(exc) or None)
            raise
        except OWN_FAULTS as exc:
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("fail_reason", reason)
            run.finish("fail", reason=reason)
            raise
        except (KeyboardInterrupt, SystemExit, Terminated):
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C / SIGTERM)")
            run.finish("killed", reason="interrupted")
            raise
        except BaseException:
            run.finish("fail", reason=traceback.format_exc(limit=5))
            raise
        bad = [v for v in values if not math.isfinite(v)]
        if bad:
            trial.set_user_attr("fail_reason", f"objective is not finite: {values}")
            run.finish("fail", reason=f"objective is not finite: {values}")
            raise TrialFault(f"objective is not finite: {values}")
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
        run.finish("complete", metrics={"objective": values[0]})
        return values[0] if len(values) == 1 else values

    def stop_when_done(study_: optuna.Study, _trial) -> None:
        if not st.budget_left(study_, tune) or (deadline and time.time() >= deadline):
            study_.stop()

    progress = TrialProgress(
        tune.n_trials, study.metric_names[0] if study.metric_names else "objective"
    )
    blips = 0
    try:
        while st.budget_left(study, tune) and not (deadline and time.time() >= deadline):
            timeout = None if deadline is None else max(1.0, deadline - time.time())
            try:
                study.optimize(
                    objective,
                    n_trials=None,
                    timeout=timeout,
                    catch=(BudgetReached, *OWN_FAULTS),
                    callbacks=[progress, stop_when_done],
                    gc_after_trial=False,
                    show_progress_bar=False,
                )
                return
            except STORAGE_ERRORS as exc:  # a DB blip: back off and go on, never exit
                blips += 1
                if blips > MAX_BLIPS:
                    raise
                wait = min(60.0, 2.0**blips)
                log.warning(
                    "storage error (%s: %s); retrying in %.0f s (%d/%d)",
                    type(exc).__name__,
                    str(exc).splitlines()[0][:200],
                    wait,
                    blips,
                    MAX_BLIPS,
                )
                time.sleep(wait)
    finally:
        progress.close()
