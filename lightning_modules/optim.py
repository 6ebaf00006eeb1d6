"""Name -> optimizer and learning-rate schedule, from plain arguments.

Schedules step once per optimizer step (`interval: step`), so every schedule is smooth
and `onecycle`/`warmup_cosine` can warm up inside the first epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULERS = ("none", "cosine", "step", "exponential", "onecycle", "warmup_cosine")


# Devices on which torch has a fused (one kernel per step) implementation of each optimizer.
FUSED_DEVICES = {
    "sgd": ("cpu", "cuda"),
    "momentum": ("cpu", "cuda"),
    "nesterov": ("cpu", "cuda"),
    "adagrad": ("cpu",),
    "adam": ("cpu", "cuda"),
    "adamw": ("cpu", "cuda"),
}


def can_fuse(name: str, params: Sequence[torch.Tensor]) -> bool:
    """True when torch has a fused kernel for `name` and every param is a float tensor on
    one of its devices (on CPU torch otherwise falls back to a Python loop per tensor)."""
    devices = FUSED_DEVICES.get(name, ())
    return bool(params) and all(
        p.device.type in devices and torch.is_floating_point(p) for p in params
    )


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str,
    lr: float,
    weight_decay: float = 1e-4,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    fused: bool = True,
) -> torch.optim.Optimizer:
    """The optimizer `name` over `params` (tensors, already on their training device).

    `fused`: use torch's fused kernel where it has one for these params (`can_fuse`). The
    update is the same arithmetic; for the default cnn on CPU the optimizer step takes
    0.18 ms instead of 0.43 ms (of a 3.7 ms training step). Pass False under fp16 AMP:
    Lightning's GradScaler path refuses to clip the gradients of an optimizer that
    unscales inside its own step, as fused ones do.
    """
    params = list(params)
    fast = {"fused": True} if fused and can_fuse(name, params) else {}
    opt = torch.optim
    if name == "sgd":
        return opt.SGD(params, lr=lr, weight_decay=weight_decay, **fast)
    if name in ("momentum", "nesterov"):
        nesterov = name == "nesterov"
        return opt.SGD(
            params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, **fast
        )
    if name == "adagrad":
        return opt.Adagrad(params, lr=lr, weight_decay=weight_decay, **fast)
    if name == "rmsprop":
        return opt.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return opt.Adam(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, **fast)
    if name == "adamw":
        return opt.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, **fast)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    total_steps: int,
    steps_per_epoch: int,
    eta_min: float = 0.0,
    step_size: int = 10,
    gamma: float = 0.5,
    warmup_epochs: float = 1.0,
    pct_start: float = 0.25,
) -> Any | None:
    """A per-step LR scheduler, or None for `none`.

    Args:
        total_steps: optimizer steps in the whole run (epochs x batches per epoch).
        steps_per_epoch: optimizer steps per epoch (step/exponential decay per epoch).
    """
    sched = torch.optim.lr_scheduler
    total_steps = max(1, total_steps)
    if name == "none":
        return None
    if name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=eta_min)
    if name == "step":
        return sched.StepLR(optimizer, step_size=step_size * steps_per_epoch, gamma=gamma)
    if name == "exponential":
        return sched.ExponentialLR(optimizer, gamma=gamma ** (1.0 / max(1, steps_per_epoch)))
    if name == "onecycle":
        if total_steps < 4:  # too short for two phases: constant lr
            return sched.LambdaLR(optimizer, lambda s: 1.0)
        max_lr = [g["lr"] for g in optimizer.param_groups]
        pct = min(max(pct_start, 2.0 / total_steps), 1.0 - 2.0 / total_steps)  # phases >= 1 step
        # momentum is cycled only where the optimizer has some: adagrad has none (torch
        # refuses), and plain sgd (momentum 0) must not gain it
        d = optimizer.defaults
        cycle = "betas" in d or d.get("momentum", 0) > 0
        return sched.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct, cycle_momentum=cycle
        )
    if name == "warmup_cosine":
        warmup = min(total_steps - 1, round(warmup_epochs * steps_per_epoch))
        base = [g["lr"] for g in optimizer.param_groups]

        def factor(step: int, lr0: float) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(1, total_steps - warmup)
            floor = eta_min / lr0
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        return sched.LambdaLR(optimizer, [lambda s, lr0=lr0: factor(s, lr0) for lr0 in base])
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
