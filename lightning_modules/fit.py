"""Build a lean `lightning.Trainer` from plain arguments.

Lean = no Lightning logger (the caller's `History` sink logs per epoch), no model summary,
no sanity validation pass; checkpoints `last.ckpt` + `best.ckpt` at every epoch end.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint


def strategy_for(strategy: str, devices: int, num_nodes: int, accelerator: str):
    """`auto` with several devices/nodes -> DDP (gloo on CPU, NCCL on GPUs).

    `fsdp`: Lightning's FSDPStrategy with its defaults (full sharding, one unit for the
    whole network, full state dicts in checkpoints so model.pt stays a plain state dict).
    """
    if strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        return FSDPStrategy(state_dict_type="full")
    if strategy in ("ddp", "auto") and devices * num_nodes > 1:
        from lightning.pytorch.strategies import DDPStrategy

        backend = "gloo" if accelerator == "cpu" else None
        return DDPStrategy(process_group_backend=backend)
    return strategy


def build_trainer(
    checkpoint_dir: str | Path | None,
    monitor: str,
    mode: str,
    max_epochs: int,
    accelerator: str = "auto",
    devices: int = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    precision: str = "32",
    deterministic: bool = True,
    log_every_n_steps: int = 50,
    gradient_clip_val: float | None = None,
    gradient_clip_algorithm: str = "norm",
    accumulate_grad_batches: int = 1,
    early_stopping: dict | None = None,
    ema_decay: float | None = None,
    ema_every: int = 1,
    progress_bar: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> L.Trainer:
    """A Trainer whose ModelCheckpoint keeps `last.ckpt` and `best.ckpt` (by `monitor`).

    `checkpoint_dir=None`: no checkpoint files at all (tuning trials, which are retried
    from scratch, never resumed: saving two files per epoch cost ~4% of a trial).

    `ema_decay`: keep an exponential moving average of the weights, updated every
    `ema_every` optimizer steps (`WeightEMA`); validation, checkpoints' `state_dict` and the
    weights after `fit` are the average (the raw weights ride along in the checkpoint, so
    resume continues both).
    """
    checkpoints: list[L.Callback] = []
    if checkpoint_dir is not None:
        best = ModelCheckpoint(
            dirpath=str(checkpoint_dir),
            filename="best",
            monitor=monitor,
            mode=mode,
            save_top_k=1,
            enable_version_counter=False,
        )
        # Since Lightning 2.6 `save_last=True` rewrites last.ckpt only when a top-k file is
        # saved, so with a saturated monitor it froze at the best epoch and resume redid every
        # epoch after it. A monitor-less checkpoint overwrites last.ckpt every epoch instead.
        last = ModelCheckpoint(
            dirpath=str(checkpoint_dir), filename="last", save_top_k=1, enable_version_counter=False
        )
        checkpoints = [best, last]
    cbs: list[L.Callback] = [*callbacks]
    if ema_decay is not None:
        from lightning_modules.callbacks import WeightEMA

        cbs.append(WeightEMA(ema_decay, ema_every))
    cbs += checkpoints  # `trainer.checkpoint_callback` is the first: best
    if early_stopping:
        cbs.append(EarlyStopping(monitor=monitor, mode=mode, **early_stopping))
    resolved = resolve_accelerator(accelerator)
    return L.Trainer(
        accelerator=resolved,
        devices=devices,
        strategy=strategy_for(strategy, devices, num_nodes, resolved),
        num_nodes=num_nodes,
        precision=precision,
        deterministic=deterministic,
        max_epochs=max_epochs,
        log_every_n_steps=log_every_n_steps,
        gradient_clip_val=gradient_clip_val,
        gradient_clip_algorithm=gradient_clip_algorithm if gradient_clip_val else None,
        accumulate_grad_batches=accumulate_grad_batches,
        callbacks=cbs,
        enable_checkpointing=bool(checkpoints),
        logger=False,
        enable_model_summary=False,
        enable_progress_bar=progress_bar,
        num_sanity_val_steps=0,
    )


def resolve_accelerator(accelerator: str) -> str:
    """`auto` -> cuda if available, else cpu (MPS only when asked: it lacks some kernels)."""
    if accelerator != "auto":
        return "cuda" if accelerator == "gpu" else accelerator
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
