"""Create or resume the study: storage, sampler, pruner, name; recover stale trials.

Local default storage is a journal file (safe for several processes on one machine).
`tune.storage: postgresql://...` (or $REPROLAB_OPTUNA_STORAGE) uses RDBStorage with
heartbeats, a grace period and a retry callback, for workers on many machines.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import optuna
import psutil
from optuna.trial import TrialState

from stages.schema.tune import TuneParams

log = logging.getLogger("reprolab.tune")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HOST_ATTR, PID_ATTR = "reprolab_host", "reprolab_pid"
# what a trial's intermediate step counts: epochs trained (1..tune.max_epochs)
STEP_ATTR, STEP_UNIT = "reprolab_step", "epochs_trained"


def storage_url(tune: TuneParams) -> str | None:
    return os.environ.get("REPROLAB_OPTUNA_STORAGE") or tune.storage


def make_storage(tune: TuneParams, journal_path: Path) -> optuna.storages.BaseStorage:
    url = storage_url(tune)
    if url is None:
        from optuna.storages.journal import JournalFileBackend

        journal_path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(journal_path)))
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs={
            "pool_size": 5,
            "max_overflow": 10,
            "pool_pre_ping": True,
            "pool_recycle": 1800,
        },
        heartbeat_interval=tune.heartbeat_interval,
        grace_period=tune.grace_period,
        failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=3),
    )


def make_sampler(tune: TuneParams, seed: int, n_params: int) -> optuna.samplers.BaseSampler:
    startup = tune.n_startup_trials
    if tune.sampler == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup, multivariate=True, group=True, constant_liar=True
        )
    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if tune.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=startup, warn_independent_sampling=False
        )
    if tune.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    return optuna.samplers.QMCSampler(seed=seed, scramble=True)


def make_pruner(tune: TuneParams) -> optuna.pruners.BasePruner:
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=tune.max_epochs, reduction_factor=tune.reduction_factor
        )
    if tune.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=tune.reduction_factor
        )
    if tune.pruner == "median":
        # steps are epochs trained (1-based): no pruning before the second epoch's report
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    return optuna.pruners.NopPruner()


def directions(tune: TuneParams, task: str) -> list[str]:
    return [tune.resolved_metric(task)[1]] + ["minimize"] * len(tune.objectives)


def open_study(
    tune: TuneParams, name: str, seed: int, journal_path: Path, task: str = "classification"
) -> optuna.Study:
    """Create the study, or load it if it exists (resume)."""
    study = optuna.create_study(
        study_name=name,
        storage=make_storage(tune, journal_path),
        sampler=make_sampler(tune, seed, len(tune.search_space)),
        pruner=make_pruner(tune),
        directions=directions(tune, task),
        load_if_exists=True,
    )
    if study.user_attrs.get(STEP_ATTR) != STEP_UNIT:
        if study.get_trials(deepcopy=False, states=FINISHED):
            log.warning(
                "study %s was started by an older reprolab that reported Lightning's 0-based "
                "epoch as the step; its trials' rungs sit one epoch later than new trials'. "
                "Name a new study (tune.study_name) to compare like with like",
                name,
            )
        study.set_user_attr(STEP_ATTR, STEP_UNIT)
    return study


def count(study: optuna.Study, states=FINISHED) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def running(study: optuna.Study) -> int:
    return count(study, (TrialState.RUNNING,))


def waiting(study: optuna.Study) -> int:
    return count(study, (TrialState.WAITING,))


def fail_stale(study: optuna.Study) -> None:
    """RDB: Optuna's heartbeat check (+ retry callback). Journal: dead local pids."""
    if (
        isinstance(study._storage, optuna.storages.RDBStorage)
        or hasattr(study._storage, "get_heartbeat_interval")
        and study._storage.get_heartbeat_interval()
    ):
        optuna.storages.fail_stale_trials(study)
    else:
        recover_stale_trials(study)


def mark_trial_owner(trial: optuna.Trial) -> None:
    trial.set_user_attr(HOST_ATTR, socket.gethostname())
    trial.set_user_attr(PID_ATTR, os.getpid())


def recover_stale_trials(study: optuna.Study) -> int:
    """Fail RUNNING trials whose worker on this host is dead, and re-queue their params.

    RDB storage does this itself through heartbeats; the journal has none, so trials are
    tagged with host + pid when they start and checked here.
    """
    host, recovered = socket.gethostname(), 0
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get(PID_ATTR)
        if t.user_attrs.get(HOST_ATTR) != host or pid is None or psutil.pid_exists(int(pid)):
            continue
        storage.set_trial_user_attr(
            t._trial_id, "fail_reason", f"worker pid {pid} died mid-trial; retried"
        )
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        recovered += 1
    if recovered:
        log.warning("marked %d stale RUNNING trial(s) FAIL and re-queued them", recovered)
    return recovered


def budget_left(study: optuna.Study, tune: TuneParams, own_number: int | None = None) -> bool:
    """True while finished + running (other, earlier) trials stay below n_trials."""
    if tune.n_trials is None:
        return True
    taken = [
        t
        for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
        if own_number is None or t.number < own_number
    ]
    return len(taken) < tune.n_trials


def trial_summary(study: optuna.Study) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    return {k: v for k, v in counts.items() if v or k in ("complete", "pruned", "fail")}
