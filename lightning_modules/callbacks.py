"""Callbacks: per-epoch history (kept in checkpoints), step logging, checkpoint extras.

They take plain callables (`sink(epoch, metrics)`), so tracking stays outside this package.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch import nn
from torch.optim.swa_utils import AveragedModel

Sink = Callable[[int, dict[str, float]], None]


def _wait_for_device(module: L.LightningModule) -> None:
    """CUDA runs asynchronously: finish queued kernels before reading the clock."""
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)


class History(L.Callback):
    """One row per epoch: every logged epoch metric plus train/val seconds and the lr.

    The lr is read here rather than by Lightning's `LearningRateMonitor`, which refuses a
    Trainer without a Lightning logger; the lean Trainer has none (this sink logs to MLflow).

    The rows travel in the checkpoint, so a resumed run's history is complete. Also records
    `startup_seconds`: from `since` (a `time.time()`, e.g. process start) to the first batch.
    """

    def __init__(self, sink: Sink | None = None, since: float | None = None):
        self.rows: list[dict[str, float]] = []
        self.sink, self.since = sink, since
        self.startup_seconds: float | None = None
        self._t0 = self._t_val = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.startup_seconds is None and self.since is not None:
            self.startup_seconds = round(time.time() - self.since, 3)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        _wait_for_device(pl_module)
        self._t0 = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        _wait_for_device(pl_module)  # the epoch's queued GPU work counts as training time
        self._t_val = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        _wait_for_device(pl_module)
        now = time.perf_counter()
        row: dict[str, float] = {"epoch": float(trainer.current_epoch)}
        for name, value in sorted(trainer.callback_metrics.items()):
            if "/" in name:
                row[name] = float(value)
        row["train_seconds"] = round(self._t_val - self._t0, 4)
        row["val_seconds"] = round(now - self._t_val, 4)
        row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.rows.append(row)
        if self.sink is not None and trainer.is_global_zero:
            self.sink(trainer.current_epoch, {k: v for k, v in row.items() if k != "epoch"})

    def teardown(self, trainer, pl_module, stage: str) -> None:
        close = getattr(self.sink, "close", None)  # a sink that buffers: write the rest
        if close is not None:
            close()

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]


class StepLoss(L.Callback):
    """Send train/loss to `sink` every `every` optimizer steps (rank 0)."""

    def __init__(self, sink: Sink, every: int):
        self.sink, self.every = sink, every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if trainer.is_global_zero and step % self.every == 0 and outputs is not None:
            self.sink(step, {"train/step_loss": float(outputs["loss"])})


class CheckpointExtras(L.Callback):
    """Store a plain dict (e.g. the MLflow run id) in every checkpoint under `reprolab`."""

    def __init__(self, extras: dict[str, Any]):
        self.extras = extras

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint["reprolab"] = dict(self.extras)


class EMAModel(AveragedModel):
    """torch's `AveragedModel`, with an EMA update that never reads a device tensor.

    torch's `update_parameters` tests the `n_averaged` buffer (on the model's device) twice
    per call; on a GPU each test is a host-device synchronization that drains the launch
    queue (the EMA cost 18% of a digits epoch on an H200 that way). Here a host-side count
    mirrors the buffer; floating-point tensors move with one foreach lerp, integer buffers
    (BatchNorm's `num_batches_tracked`) take the current value.

    The module tree is walked once per model, not per update: `parameters()` walks it
    through a set of modules, hashing each, and a torchmetrics metric hashes its states,
    so the walk was 280 us of a 300 us update of the default cnn's TaskModule.
    """

    def __init__(self, model: nn.Module, decay: float, device=None):
        super().__init__(model, device=device, use_buffers=True)
        self.decay = decay
        self._updates = 0
        self._walks: dict[int, tuple[nn.Module, list[nn.Module]]] = {}

    def _tensors(self, model: nn.Module) -> list[torch.Tensor]:
        """`model`'s parameters then buffers, detached, in `parameters()`/`buffers()` order.

        Tensors are read from the modules every call (`.to()` replaces buffers); only the
        list of modules that hold any is kept (the metrics hold none).
        """
        walk = self._walks.get(id(model))
        if walk is None or walk[0] is not model:
            holders = [m for m in model.modules() if m._parameters or m._buffers]
            walk = self._walks[id(model)] = (model, holders)
        seen: set[int] = set()
        tensors = []
        for kind in ("_parameters", "_buffers"):
            for module in walk[1]:
                for t in getattr(module, kind).values():
                    if t is not None and id(t) not in seen:  # shared tensors count once
                        seen.add(id(t))
                        tensors.append(t.detach())
        return tensors

    def update_parameters(self, model: nn.Module) -> None:
        avg, cur = self._tensors(self.module), self._tensors(model)
        if self._updates == 0:
            for a, c in zip(avg, cur, strict=True):
                a.copy_(c)
        else:
            floats: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
            for a, c in zip(avg, cur, strict=True):
                if a.is_floating_point():
                    floats[0].append(a)
                    floats[1].append(c)
                else:
                    a.copy_(c)
            torch._foreach_lerp_(floats[0], floats[1], 1.0 - self.decay)
        self._updates += 1
        self.n_averaged.add_(1)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._updates = int(self.n_averaged)  # once, on resume
        return result


class WeightEMA(WeightAveraging):
    """Exponential moving average of the weights, updated every `every` optimizer steps.

    `decay` is per optimizer step; updating every k steps with decay**k keeps the same
    time constant (1 / (1 - decay) steps) at 1/k of the cost. Lightning's own
    `EMAWeightAveraging` updates tensor by tensor in Python and synchronizes with the GPU
    on every update; this keeps `EMAModel` (one foreach lerp, no host reads). The rest
    (validation and checkpoints on the average, raw weights kept for resume) is Lightning's.
    """

    def __init__(self, decay: float, every: int = 1):
        super().__init__()
        self.decay, self.every = decay, every

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":  # pl_module.device is already the training device here
            self._average_model = EMAModel(
                pl_module, self.decay**self.every, device=self._device or pl_module.device
            )

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx % self.every == 0
