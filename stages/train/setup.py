"""train stage set-up: params (+ the tuned overlay), combination checks, module arguments.

Everything here runs before any compute or MLflow run, so a bad combination is refused
with the dotted key, the value found and what is allowed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from stages import config
from stages.runtime.errors import ConfigError

log = logging.getLogger("reprolab.train")


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
        "l1": t.l1,
        "compile": t.compile,
        "optimizer": t.optimizer.model_dump(mode="json"),
        "scheduler": t.scheduler.model_dump(mode="json"),
        "mixup": {"p": t.mixup.p if t.mixup.enabled else 0.0, "alpha": t.mixup.alpha},
        "cutmix": {"p": t.cutmix.p if t.cutmix.enabled else 0.0, "alpha": t.cutmix.alpha},
        "seed": cfg.seed,
    }
