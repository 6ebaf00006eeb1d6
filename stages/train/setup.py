"""train stage set-up: params (+ the tuned overlay), combination checks, module arguments.

Everything here runs before any compute or MLflow run, so a bad combination is refused
with the dotted key, the value found and what is allowed.
"""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path
from typing import Any

from stages import config
from stages.runtime.errors import ConfigError

log = logging.getLogger("reprolab.train")

CLASSIFICATION_MONITORS = ("val/loss", "val/acc", "val/f1", "val/auroc")
REGRESSION_MONITORS = ("val/loss", "val/rmse", "val/mae", "val/r2")


def load_params(params_path: Path, tuned_path: Path) -> tuple[config.Params, bool]:
    """params.yaml, with `tuned_path` (dotted key -> value) overlaid if `train.use_tuned`.

    Returns:
        (validated params, whether the tuned values were applied).
    """
    cfg = config.load(params_path)
    if not cfg.train.use_tuned or not tuned_path.exists():
        if cfg.train.use_tuned:
            log.info("train.use_tuned: no %s yet (run `dvc repro tune`); using params", tuned_path)
        return cfg, False
    from stages.common.search_space import apply_overrides

    tuned = config.read_yaml(tuned_path)
    if not tuned:
        log.info("train.use_tuned: %s is empty (tune.enabled: false); using params", tuned_path)
        return cfg, False
    raw = apply_overrides(config.read_yaml(params_path), tuned)
    try:
        cfg = config.validate(raw, params_path)
    except ConfigError as exc:
        raise ConfigError(f"{tuned_path} overlaid on {exc}") from None
    log.info("train.use_tuned: applied %s: %s", tuned_path, tuned)
    return cfg, True


def task_of(schema: dict[str, Any]) -> str:
    if schema["task"] == "regression":
        return "regression"
    return "binary" if schema["n_classes"] == 2 else "multiclass"


def shipped_checkpoint(cfg: config.Params) -> str:
    """ "best" or "last": which checkpoint becomes model.pt.

    auto: with early stopping the run ends `patience` epochs past its best, so best; else
    last, the end of the (annealed, weight-averaged) schedule. On a small val split "best"
    is picked by a row or two of noise, mid-schedule (digits, default cnn, 6 seeds: test
    accuracy 0.9889 best-by-val/loss vs 0.9914 last).
    """
    ship = cfg.train.ship
    if ship == "auto":
        return "best" if cfg.train.early_stopping.enabled else "last"
    return ship


def monitor_of(cfg: config.Params, schema: dict[str, Any]) -> tuple[str, str]:
    """The metric the best checkpoint and early stopping follow, and min/max."""
    monitor = cfg.train.monitor
    if monitor == "auto":
        # classification: val/loss, not val/acc. On a small val split accuracy saturates and
        # ties, so "best" became the first epoch to touch the max, mid-schedule; the
        # continuous NLL keeps ranking epochs (digits, 6 seeds: test 0.9914 vs 0.9877).
        monitor = "val/rmse" if schema["task"] == "regression" else "val/loss"
    return monitor, "min" if monitor in ("val/loss", "val/rmse", "val/mae") else "max"


@functools.cache
def cpu_has_bf16() -> bool:
    """Native bf16 on this CPU (x86 AVX512-BF16/AMX, or Arm's BF16 extension)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.system() == "Darwin" and platform.machine() == "arm64"
    flags = set(text.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def check_compatible(cfg: config.Params, schema: dict[str, Any]) -> None:
    """Refuse combinations the data or machine cannot run, naming the key."""
    from lightning_modules.layouts import layout
    from lightning_modules.networks import SUPPORTED

    m, t = cfg.model, cfg.train
    shape = schema["input_shape"]
    kind = layout(shape)
    problems = []
    if kind not in SUPPORTED[m.arch]:
        fits = [a for a, kinds in SUPPORTED.items() if kind in kinds]
        problems.append(
            f"model.arch = {m.arch!r}: needs {' or '.join(SUPPORTED[m.arch])} input, but the "
            f"data is a {kind} of shape {shape}; for this data use one of {', '.join(fits)}"
        )
    if (
        m.arch == "transformer"
        and kind == "image"
        and any(s % m.transformer.patch_size for s in shape[1:])
    ):
        problems.append(
            f"model.transformer.patch_size = {m.transformer.patch_size}: must divide the image "
            f"size {shape[1]}x{shape[2]}"
        )
    if t.cutmix.enabled and kind != "image":
        problems.append(f"train.cutmix.enabled = true: CutMix needs images, the data is a {kind}")
    mix_p = (t.mixup.p if t.mixup.enabled else 0) + (t.cutmix.p if t.cutmix.enabled else 0)
    if mix_p > 1:
        problems.append(f"train.mixup.p + train.cutmix.p = {mix_p:g}: must be at most 1")
    regression = schema["task"] == "regression"
    if (
        regression
        and t.loss == "cross_entropy"
        or not regression
        and t.loss in ("mse", "huber", "l1")
    ):
        allowed = "auto, mse, huber, l1" if regression else "auto, cross_entropy"
        problems.append(f"train.loss = {t.loss!r}: not for {schema['task']}; use {allowed}")
    allowed_monitors = REGRESSION_MONITORS if regression else CLASSIFICATION_MONITORS
    if t.monitor != "auto" and t.monitor not in allowed_monitors:
        problems.append(
            f"train.monitor = {t.monitor!r}: not logged for {schema['task']}; "
            f"use auto, {', '.join(allowed_monitors)}"
        )
    problems += _device_problems(cfg)
    if problems:
        raise ConfigError("incompatible params:\n  " + "\n  ".join(problems))


def _device_problems(cfg: config.Params) -> list[str]:
    import torch

    t = cfg.train
    cuda = t.accelerator in ("gpu", "cuda") or (
        t.accelerator == "auto" and torch.cuda.is_available()
    )
    if cuda and not torch.cuda.is_available():
        return [f"train.accelerator = {t.accelerator!r}: no CUDA device here; use cpu or auto"]
    if cuda and t.devices > torch.cuda.device_count():
        return [f"train.devices = {t.devices}: only {torch.cuda.device_count()} GPU(s) here"]
    if t.accelerator == "mps" and not torch.backends.mps.is_available():
        return ["train.accelerator = 'mps': MPS is not available here; use cpu or auto"]
    if t.precision == "bf16-mixed" and not cuda and not cpu_has_bf16():
        return [
            "train.precision = 'bf16-mixed': this CPU lacks native bf16 "
            "(avx512_bf16/amx); use 32, or a GPU"
        ]
    if t.precision == "bf16-mixed" and cuda and not torch.cuda.is_bf16_supported():
        return ["train.precision = 'bf16-mixed': this GPU lacks bf16; use 16-mixed or 32"]
    if t.precision == "16-mixed" and not cuda:
        return ["train.precision = '16-mixed': needs a GPU; on CPU use 32 (or bf16-mixed)"]
    return []


def module_args(cfg: config.Params, schema: dict[str, Any]) -> dict[str, Any]:
    """Plain `TaskModule` arguments; `net_kwargs` is what models/model.pt stores."""
    m, t = cfg.model, cfg.train
    task = task_of(schema)
    n_classes = schema["n_classes"] or 0
    stats = schema.get("target_stats") or {}
    net_kwargs: dict[str, Any] = {
        "input_shape": list(schema["input_shape"]),
        "n_outputs": n_classes if task == "multiclass" else 1,
        "init": m.init,
        **m.model_dump(mode="json", exclude={"arch", "init", "transformer", "rnn"}),
        **m.transformer.model_dump(mode="json"),
        **m.rnn.model_dump(mode="json"),
    }
    if task == "regression":
        net_kwargs |= {"target_mean": stats.get("mean", 0.0), "target_std": stats.get("std", 1.0)}
    return {
        "arch": m.arch,
        "net_kwargs": net_kwargs,
        "task": task,
        "n_classes": n_classes,
        "loss": t.loss,
        "label_smoothing": t.label_smoothing,
        "optimizer": t.optimizer.model_dump(mode="json"),
        "scheduler": t.scheduler.model_dump(mode="json"),
        "mixup": {"p": t.mixup.p if t.mixup.enabled else 0.0, "alpha": t.mixup.alpha},
        "cutmix": {"p": t.cutmix.p if t.cutmix.enabled else 0.0, "alpha": t.cutmix.alpha},
        "seed": cfg.seed,
    }
