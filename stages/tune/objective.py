"""The objective: one trial = the real train stage code on the trial's params.

Pruning is our own callback, not Optuna's Lightning integration (which breaks under DDP):
global rank 0 reports the monitored val metric each epoch and asks the pruner; the decision
is broadcast so every rank stops at the same epoch, and no rank waits on a collective that
the others skipped. Under `ddp_spawn` the callback is pickled into the worker processes,
so it carries how to reopen the trial (study name + storage), not the trial object.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import optuna

from stages import config
from stages.runtime.errors import UserError
from stages.tune import study as st
from stages.tune.trial_runs import EpochSink
from stages.tune.worker import TrialFault

PRUNED_AT, BEST_VALUE = "pruned_at_epoch", "best_monitored_value"
NAN_FAULT_ENV = "REPROLAB_FAULT_NAN"  # "<trial number or *>:<step>" (fault-injection tests)
HANG_FAULT_ENV = "REPROLAB_FAULT_HANG"  # "<trial number>:<step>" (fault-injection tests)


def _fault_callbacks(number: int) -> list[L.Callback]:
    from lightning_modules import faults

    callbacks: list[L.Callback] = []
    for env, factory in ((NAN_FAULT_ENV, faults.NanAtStep), (HANG_FAULT_ENV, faults.HangAtStep)):
        trial, _, step = os.environ.get(env, "").partition(":")
        if trial == "*" or (trial and int(trial) == number):
            callbacks.append(factory(int(step or 0)))
    return callbacks


@dataclass
class TrialHandle:
    """Reopens the trial in whatever process holds rank 0."""

    study_name: str
    trial_id: int
    tune: Any
    journal: str
    task: str
    _trial: optuna.Trial | None = field(default=None, repr=False)
    _pid: int = field(default_factory=os.getpid, repr=False)

    def trial(self) -> optuna.Trial:
        if self._trial is None or self._pid != os.getpid():  # forked: own connections
            self._pid = os.getpid()
            study = optuna.load_study(
                study_name=self.study_name,
                storage=st.make_storage(self.tune, Path(self.journal)),
                pruner=st.make_pruner(self.tune),
            )
            self._trial = optuna.Trial(study, self.trial_id)
        return self._trial

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_trial": None}


class PruneOnEpoch(L.Callback):
    """Also records the best monitored value on the trial, for ranks run in other processes."""

    def __init__(self, handle: TrialHandle, monitor: str, maximize: bool, can_prune: bool = True):
        self.handle, self.monitor, self.can_prune = handle, monitor, can_prune
        self.maximize = maximize
        self.pruned_at: int | None = None
        self.best: float | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch, prune = trainer.current_epoch, False
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.is_global_zero and value is not None and self.can_prune:
            value = float(value)
            if math.isfinite(value):
                trial = self.handle.trial()
                if self.best is None or (value > self.best) == self.maximize:
                    self.best = value
                    trial.set_user_attr(BEST_VALUE, value)
                # step = epochs trained so far (the pruner's resource), not Lightning's
                # 0-based epoch index: with min_resource 1 the first rung then comes after
                # one epoch, and the last report reaches max_resource = tune.max_epochs
                trial.report(value, epoch + 1)
                # Hyperband's rungs go up to max_resource: a "prune" after the last epoch
                # would save nothing and throw away a fully trained trial's value
                last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
                prune = not last and trial.should_prune()
                if prune:
                    trial.set_user_attr(PRUNED_AT, epoch)
        prune = bool(trainer.strategy.broadcast(prune, src=0))
        if prune:
            self.pruned_at = epoch
            trainer.should_stop = True


def make_train_trial(
    cfg: config.Params,
    schema: dict[str, Any],
    prepared: Path,
    augmented: Path,
    study_name: str,
    journal: Path,
):
    """Return `train_trial(cfg_trial, trial, run) -> list[float]` for the worker loop."""
    from stages.train import stage as train

    metric, direction = cfg.tune.resolved_metric(schema["task"])
    multi = bool(cfg.tune.objectives)

    def train_trial(trial_cfg: config.Params, trial: optuna.Trial, run) -> list[float]:
        trial_cfg = _in_process_ddp(trial_cfg)
        # a trial's value is its best epoch by the study's metric: its monitor follows it
        train_cfg = trial_cfg.train.model_copy(update={"monitor": metric})
        trial_cfg = trial_cfg.model_copy(update={"train": train_cfg})
        handle = TrialHandle(
            study_name, trial._trial_id, cfg.tune, str(journal), schema["task"], _trial=trial
        )
        pruning = PruneOnEpoch(handle, metric, direction == "maximize", can_prune=not multi)
        with tempfile.TemporaryDirectory(prefix=f"reprolab-trial-{trial.number}-") as tmp:
            paths = train.Paths.under(Path(tmp), prepared, augmented)
            sink = EpochSink(run.client.tracking_uri, run.run_id)
            try:
                result = train.run(
                    trial_cfg,
                    schema,
                    paths,
                    callbacks=[pruning, *_fault_callbacks(trial.number)],
                    sink=sink,
                    checkpoints=False,  # a trial is retried, never resumed
                )
            except config.ConfigError as exc:
                raise TrialFault(f"incompatible sampled params: {exc}") from None
            except UserError as exc:  # e.g. non-finite loss: this trial's own fault
                raise TrialFault(str(exc)) from None
            finally:
                sink.close()  # the buffered epochs are in the run before it is ended
            trial.set_user_attr("epochs", result.get("epochs", 0))
            attrs = trial.storage.get_trial(trial._trial_id).user_attrs  # rank 0 may be a child
            pruned_at = pruning.pruned_at if pruning.pruned_at is not None else attrs.get(PRUNED_AT)
            if pruned_at is not None:
                raise optuna.TrialPruned(
                    f"pruned after {pruned_at + 1} epoch(s) ({metric} not promising)"
                )
            value = result.get(metric, attrs.get(BEST_VALUE))
            if value is None:
                raise TrialFault(f"{metric} was never logged (result: {sorted(result)})")
            values = [float(value)]
            values += [_extra_objective(name, paths.model) for name in cfg.tune.objectives]
        return values

    return train_trial


def _in_process_ddp(cfg: config.Params) -> config.Params:
    """Several devices inside a trial: start the other ranks from this process.

    Lightning's default DDP launcher re-runs the whole command line for each extra rank,
    which for a tuning worker would start another worker, not join this trial. Forked
    (CPU) or spawned (GPU: CUDA cannot fork) ranks run this trial's fit and nothing else.
    """
    t = cfg.train
    if t.devices * t.num_nodes <= 1:
        return cfg
    if t.num_nodes > 1:
        raise TrialFault(
            "train.num_nodes > 1 inside tuning trials is not supported; "
            "tune with one node (many workers), then train on many"
        )
    from lightning_modules.fit import resolve_accelerator

    start = "ddp_fork" if resolve_accelerator(t.accelerator) == "cpu" else "ddp_spawn"
    return cfg.model_copy(update={"train": t.model_copy(update={"strategy": start})})


def _extra_objective(name: str, model_path: Path) -> float:
    """Secondary objectives, minimized: parameter count, or batch-1 latency in ms."""
    import numpy as np
    import torch

    from lightning_modules.serialization import load_network
    from lightning_modules.timing import call_seconds

    net, meta = load_network(model_path)
    if name == "params":
        return float(sum(p.numel() for p in net.parameters()))
    x = torch.zeros((1, *meta["schema"]["input_shape"]), dtype=torch.float32)
    with torch.inference_mode():
        times = call_seconds(lambda: net(x), warmup=5, repeats=30)
    return float(np.median(times) * 1000)
