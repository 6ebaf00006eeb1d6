"""A tuning worker: runs trials of one study until the budget is used.

Any number of workers (local processes, or other machines on PostgreSQL storage) can run
this loop against the same study; the trial budget is enforced across all of them.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from typing import Any

import optuna

from stages import config
from stages.common.search_space import apply_overrides, suggest
from stages.runtime.tracking import Terminated
from stages.schema.tune import TuneParams
from stages.tune import study as st
from stages.tune.progress import TrialProgress
from stages.tune.trial_runs import TrialRun

log = logging.getLogger("reprolab.tune")


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a trial ended by Ctrl-C/SIGTERM with its traceback; the stage already
    says "interrupted ... marked KILLED" in one line, so keep Optuna's line, drop the stack.
    Tracebacks of real trial errors are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[0] if record.exc_info else None
        if exc is not None and issubclass(exc, KeyboardInterrupt | Terminated):
            record.exc_info = None
        return True


logging.getLogger("optuna.study._optimize").addFilter(_NoInterruptTraceback())


class BudgetReached(Exception):
    """Another worker took the last trial slot; this trial is discarded (FAIL, not counted)."""


class TrialFault(Exception):
    """The trial's own fault (NaN/inf loss, out of memory, invalid combination)."""


OWN_FAULTS: tuple[type[BaseException], ...] = (TrialFault, MemoryError)
MAX_BLIPS = 8  # ~4 minutes of backoff in all before a storage outage stops the worker


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
    """The params of one trial: the base file with the sampled values and trial epochs.

    A trial always fits on train alone (`train.fit_on: train`): it is scored on val.
    """
    fixed = {"train.max_epochs": tune.max_epochs, "train.fit_on": "train"}
    merged = apply_overrides(raw, {**point, **fixed})
    try:
        return config.validate(merged)
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

    def objective(trial: optuna.Trial) -> float | list[float]:
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
