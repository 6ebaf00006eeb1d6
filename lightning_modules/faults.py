"""Fault injection for reliability tests: failpoints that corrupt a real training run.

`NanAtStep(k)` fills the inputs of training step k with NaN, so the loss becomes NaN there
and the run must handle it as it would a real divergence. `HangAtStep(k)` blocks training
step k until the process is killed, so a kill -9 test hits a trial that is surely mid-run.
Enabled from outside through environment variables (see `stages.tune.objective`), never
by params.
"""

from __future__ import annotations

import time

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


class HangAtStep(L.Callback):
    def __init__(self, step: int, poll_s: float = 0.2):
        self.step, self.poll_s = step, poll_s

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            while True:  # until SIGKILL/SIGTERM
                time.sleep(self.poll_s)
