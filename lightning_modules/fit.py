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
    """`auto` with several devices/nodes -> DDP (gloo on CPU, NCCL on GPUs)."""
    if strategy in ("ddp", "auto") and devices * num_nodes > 1:
        from lightning.pytorch.strategies import DDPStrategy

        backend = "gloo" if accelerator == "cpu" else None
        return DDPStrategy(process_group_backend=backend)
    return strategy


def build_trainer(
    checkpoint_dir: str | Path,
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
    early_stopping: dict | None = None,
    progress_bar: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> L.Trainer:
    """A Trainer whose ModelCheckpoint keeps `last.ckpt` and `best.ckpt` (by `monitor`)."""
    ckpt = ModelCheckpoint(
        dirpath=str(checkpoint_dir),
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
    cbs: list[L.Callback] = [*callbacks, ckpt]
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
        callbacks=cbs,
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
