"""SIGTERM/SIGINT stop training at the next batch even if a library swallowed the exception.

The stage's handler raises the signal's exception wherever the main thread is; code that
catches `BaseException` there (or an import interrupted half-way) can drop it, and the fit
would run to its last epoch. The signal stays pending (`stages.runtime.signals`), and this
callback raises it again before each batch.
"""

from __future__ import annotations

import lightning as L

from stages.runtime import signals


class StopOnSignal(L.Callback):
    def on_train_batch_start(self, *args, **kwargs) -> None:
        signals.raise_if_received()

    def on_validation_batch_start(self, *args, **kwargs) -> None:
        signals.raise_if_received()
