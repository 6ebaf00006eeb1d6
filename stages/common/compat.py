"""Combinations of params, data and machine that cannot run, each named by its keys.

One check for every door: `python -m stages.config`, the validate stage, tune (before its
first trial) and train (before any compute). Each problem names the dotted keys it is
about, so tune can tell a fixed setting every trial would inherit from one a sampled value
can change.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages import config
from stages.runtime.errors import ConfigError

CLASSIFICATION_MONITORS = ("val/loss", "val/acc", "val/f1", "val/auroc")
REGRESSION_MONITORS = ("val/loss", "val/rmse", "val/mae", "val/r2")


PLAIN = ("32",)  # the precision every device runs


@dataclass(frozen=True)
class Problem:
    """One refused combination: the dotted keys involved, and what is wrong and allowed."""

    keys: tuple[str, ...]
    text: str


@functools.cache
def cpu_has_bf16() -> bool:
    """Native bf16 on this CPU (x86 AVX512-BF16/AMX, or Arm's BF16 extension)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.system() == "Darwin" and platform.machine() == "arm64"
    flags = set(text.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def problems(cfg: config.Params, schema: dict[str, Any] | None) -> list[Problem]:
    """Everything the data (prepare's schema.json; None: not known yet) or machine refuses."""
    found = device_problems(cfg)
    if schema is not None:
        found = data_problems(cfg, schema) + found
    return found


def check(cfg: config.Params, schema: dict[str, Any] | None) -> None:
    """Raise ConfigError listing every problem, or return."""
    found = problems(cfg, schema)
    if found:
        raise ConfigError("incompatible params:\n  " + "\n  ".join(p.text for p in found))


def data_problems(cfg: config.Params, schema: dict[str, Any]) -> list[Problem]:
    from lightning_modules.layouts import SUPPORTED, layout

    m, t = cfg.model, cfg.train
    shape = schema["input_shape"]
    kind = layout(shape)
    found = []
    if kind not in SUPPORTED[m.arch]:
        fits = [a for a, kinds in SUPPORTED.items() if kind in kinds]
        found.append(
            Problem(
                ("model.arch",),
                f"model.arch = {m.arch!r}: needs {' or '.join(SUPPORTED[m.arch])} input, but "
                f"the data is a {kind} of shape {shape}; for this data use one of "
                f"{', '.join(fits)}",
            )
        )
    patch = m.transformer.patch_size
    if m.arch == "transformer" and kind == "image" and any(s % patch for s in shape[1:]):
        found.append(
            Problem(
                ("model.transformer.patch_size", "model.arch"),
                f"model.transformer.patch_size = {patch}: must divide the image size "
                f"{shape[1]}x{shape[2]}",
            )
        )
    if t.cutmix.enabled and kind != "image":
        found.append(
            Problem(
                ("train.cutmix.enabled",),
                f"train.cutmix.enabled = true: CutMix needs images, the data is a {kind}",
            )
        )
    mix_p = (t.mixup.p if t.mixup.enabled else 0) + (t.cutmix.p if t.cutmix.enabled else 0)
    if mix_p > 1:
        found.append(
            Problem(
                ("train.mixup.p", "train.cutmix.p", "train.mixup.enabled", "train.cutmix.enabled"),
                f"train.mixup.p + train.cutmix.p = {mix_p:g}: must be at most 1",
            )
        )
    regression = schema["task"] == "regression"
    wrong_loss = t.loss == "cross_entropy" if regression else t.loss in ("mse", "huber", "l1")
    if wrong_loss:
        allowed = "auto, mse, huber, l1" if regression else "auto, cross_entropy"
        found.append(
            Problem(
                ("train.loss",),
                f"train.loss = {t.loss!r}: not for {schema['task']}; use {allowed}",
            )
        )
    monitors = REGRESSION_MONITORS if regression else CLASSIFICATION_MONITORS
    if t.monitor != "auto" and t.monitor not in monitors:
        found.append(
            Problem(
                ("train.monitor",),
                f"train.monitor = {t.monitor!r}: not logged for {schema['task']}; "
                f"use auto, {', '.join(monitors)}",
            )
        )
    return found


def device_problems(cfg: config.Params) -> list[Problem]:
    t = cfg.train
    plain = t.precision in PLAIN and t.devices == 1 and t.strategy != "fsdp"
    if t.accelerator in ("cpu", "auto") and plain:
        return []  # runs anywhere: no need to ask torch (whose import costs seconds)
    import torch

    cuda = t.accelerator in ("gpu", "cuda") or (
        t.accelerator == "auto" and torch.cuda.is_available()
    )
    accel, prec = ("train.accelerator",), ("train.precision", "train.accelerator")
    if cuda and not torch.cuda.is_available():
        text = f"train.accelerator = {t.accelerator!r}: no CUDA device here; use cpu or auto"
        return [Problem(accel, text)]
    if cuda and t.devices > torch.cuda.device_count():
        text = f"train.devices = {t.devices}: only {torch.cuda.device_count()} GPU(s) here"
        return [Problem(("train.devices", "train.accelerator"), text)]
    if t.strategy == "fsdp" and not cuda:
        text = (
            f"train.strategy = 'fsdp' with train.accelerator = {t.accelerator!r}: Lightning's "
            "FSDPStrategy runs on CUDA GPUs only (it refuses a CPU accelerator); on CPU use "
            "ddp with train.devices > 1"
        )
        return [Problem(("train.strategy", "train.accelerator"), text)]
    if t.accelerator == "mps" and not torch.backends.mps.is_available():
        return [Problem(accel, "train.accelerator = 'mps': MPS is not available here")]
    if t.precision == "bf16-mixed" and not cuda and not cpu_has_bf16():
        text = (
            "train.precision = 'bf16-mixed': this CPU lacks native bf16 "
            "(avx512_bf16/amx); use 32, or a GPU"
        )
        return [Problem(prec, text)]
    if t.precision == "bf16-mixed" and cuda and not torch.cuda.is_bf16_supported():
        text = "train.precision = 'bf16-mixed': this GPU lacks bf16; use 16-mixed or 32"
        return [Problem(prec, text)]
    if t.precision == "16-mixed" and not cuda:
        text = (
            "train.precision = '16-mixed': needs a GPU (on CPU Lightning would silently run "
            "bf16 autocast instead); on CPU use 32, or bf16-mixed to ask for that"
        )
        return [Problem(prec, text)]
    return []


def device_warnings(cfg: config.Params) -> list[str]:
    """Settings that run, but badly: more CPU DDP ranks than this machine has cores."""
    t = cfg.train
    if t.accelerator not in ("cpu", "auto") or t.devices <= 1:
        return []
    import torch

    if t.accelerator == "auto" and torch.cuda.is_available():
        return []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if t.devices <= (cores or 1):
        return []
    return [
        f"train.devices = {t.devices}: {t.devices} CPU ranks on {cores} core(s) share them and "
        "run slower than one rank; use at most as many devices as cores"
    ]
