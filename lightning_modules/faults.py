"""Fault injection for reliability tests: failpoints that corrupt a real training run.

`NanAtStep(k)` fills the inputs of training step k with NaN, so the loss becomes NaN there
and the run must handle it as it would a real divergence. Enabled from outside through an
environment variable (see `stages.tuning.objective`), never by params.
"""

from __future__ import annotations

import lightning as L
import torch


class NanAtStep(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            x = batch[0] if isinstance(batch, list | tuple) else batch
            with torch.no_grad():
                x.fill_(float("nan"))
