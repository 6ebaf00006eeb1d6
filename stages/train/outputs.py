"""train stage outputs (rank 0): model files, metrics, history CSV, and their MLflow logging."""

from __future__ import annotations

import csv
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages import config
from stages.common import io, splits
from stages.train.paths import Paths

log = logging.getLogger("reprolab.train")


@dataclass(frozen=True)
class FitResult:
    """What one fit left behind, for `write_outputs`."""

    trainer: Any  # the Lightning Trainer after `fit`
    rows: list[dict[str, Any]]  # one history row per epoch
    monitor: str  # the metric that picks the best checkpoint, e.g. "val/loss"
    mode: str  # "min" | "max"
    started: float  # time.perf_counter() when the stage began
    run_id: str | None  # the MLflow run the model belongs to
    startup: float | None = None  # seconds from the start to the first step
    module: Any = None  # set when the run kept no checkpoint files (its weights ship)


def write_outputs(
    cfg: config.Params,
    schema: dict[str, Any],
    paths: Paths,
    args: dict[str, Any],
    fit: FitResult,
) -> dict[str, Any]:
    """Write models/model.{ckpt,pt}, metrics/train.json and plots/train_history.csv.

    Args:
        cfg: validated params (the model and train sections are saved with the network).
        schema: prepare's schema.json.
        paths: the stage's outputs.
        args: `setup.module_args` (arch, net_kwargs, task).
        fit: the finished fit. Without checkpoint files (`fit.module` set) model.pt takes
            the weights as fit left them, and no model.ckpt is written.

    Returns: the metrics written to metrics/train.json.
    """
    trainer, module = fit.trainer, fit.module
    import torch

    from lightning_modules.networks import build_network
    from lightning_modules.serialization import package, save_network
    from stages.train.setup import shipped_checkpoint

    if module is not None:
        shipped, chosen = "end of fit", None
        ckpt = {"epoch": trainer.current_epoch - 1, "state_dict": module.state_dict()}
    else:
        shipped = shipped_checkpoint(cfg)
        best = Path(trainer.checkpoint_callback.best_model_path or paths.last)
        chosen = best if shipped == "best" else paths.last
        ckpt = torch.load(chosen, map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    net = build_network(args["arch"], **args["net_kwargs"])
    net.load_state_dict(
        {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    )
    payload = package(
        net,
        args["arch"],
        args["net_kwargs"],
        args["task"],
        config.section_dict(cfg, "model", "train"),
        schema,
        fit.run_id,
    )
    with io.atomic_file(paths.model) as tmp:
        save_network(tmp, payload)
    if chosen is not None:
        with io.atomic_file(paths.ckpt) as tmp:
            tmp.write_bytes(chosen.read_bytes())
    write_history(paths.history, fit.rows)
    metrics = summarize(fit.rows, fit.monitor, fit.mode, trainer, fit.started) | {
        "shipped": shipped,
        "shipped_epoch": int(ckpt["epoch"]),
        "startup_seconds": fit.startup,
        "fit_on": cfg.train.fit_on,  # train+val: the val/* figures above are in-sample
    }
    io.write_json(paths.metrics, metrics)
    log.info(" ".join(f"{k}={v}" for k, v in metrics.items()))
    return metrics


def summarize(rows, monitor, mode, trainer, started) -> dict[str, Any]:
    """Best epoch's val metrics, epochs run, wall and per-epoch train seconds."""
    scored = [r for r in rows if monitor in r]
    pick = max if mode == "max" else min
    best = pick(scored, key=lambda r: r[monitor]) if scored else (rows[-1] if rows else {})
    out: dict[str, Any] = {k: round(v, 6) for k, v in best.items() if k.startswith("val/")}
    out["monitor"] = monitor
    out["best_epoch"] = int(best.get("epoch", -1))
    out["epochs"] = len(rows)
    out["stopped_early"] = bool(trainer.should_stop and trainer.current_epoch < trainer.max_epochs)
    out["wall_seconds"] = round(time.perf_counter() - started, 3)
    if rows:
        out["epoch_train_seconds"] = round(statistics.median(r["train_seconds"] for r in rows), 4)
    return out


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    columns = ["epoch", *sorted({k for r in rows for k in r} - {"epoch"})]
    with io.atomic_file(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: int(v) if k == "epoch" else v for k, v in r.items()})


def mlflow_sink():
    import mlflow

    def sink(step: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=step)

    return sink


def log_to_mlflow(tuned: bool, resumed: bool = False, metrics=None, paths=None) -> None:
    """Tags before training; after it the summary metrics, history and the model."""
    import mlflow

    if metrics is None:
        mlflow.set_tags({"train.tuned": str(tuned).lower(), "train.resumed": str(resumed).lower()})
        return
    mlflow.log_metrics(
        {
            f"best.{k}": v
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
    )
    mlflow.log_artifact(str(paths.history))
    mlflow.log_artifact(str(paths.metrics))
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "train_history.png"
        plot_history(paths.history, png)
        mlflow.log_artifact(str(png))
    _log_model(paths)


def _log_model(paths) -> None:
    import mlflow
    import torch
    from mlflow.models import infer_signature

    import lightning_modules
    from lightning_modules.serialization import load_network, predict

    net, meta = load_network(paths.model)
    example = splits.head(paths.prepared / "val", 2)
    signature = infer_signature(example, predict(net, meta, example))
    mlflow.pytorch.log_model(
        net,
        name="model",
        signature=signature,
        input_example=example,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        code_paths=[str(Path(lightning_modules.__file__).parent)],
    )


def plot_history(csv_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name in ("train/loss", "val/loss"):
        if rows and name in rows[0]:
            ax_loss.plot(epochs, [float(r[name] or "nan") for r in rows], label=name)
    for name in ("train/acc", "val/acc", "train/rmse", "val/rmse"):
        if rows and name in rows[0]:
            ax_metric.plot(epochs, [float(r[name] or "nan") for r in rows], label=name)
    for ax in (ax_loss, ax_metric):
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
