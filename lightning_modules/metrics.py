"""torchmetrics per split and task: accuracy / macro-F1 / AUROC, or RMSE / MAE / R²."""

from __future__ import annotations

import torchmetrics as tm
from torch import nn

CLASSIFICATION = ("acc", "f1", "auroc")
REGRESSION = ("rmse", "mae", "r2")


def build_metrics(task: str, n_classes: int, split: str) -> tm.MetricCollection:
    """Metrics for one split. Classification takes class probabilities (B, K) (val, test)
    or predicted class indices (train).

    The train split keeps accuracy (or RMSE) only, fed once per epoch with that epoch's
    predictions: AUROC needs probabilities of every row and a per-step update costs about
    as much as a small network's step.
    """
    if task == "regression":
        metrics: dict[str, nn.Module] = {"rmse": tm.MeanSquaredError(squared=False)}
        if split != "train":
            metrics |= {"mae": tm.MeanAbsoluteError(), "r2": tm.R2Score()}
        return tm.MetricCollection(metrics, prefix=f"{split}/")
    k = max(2, n_classes)
    metrics = {"acc": tm.classification.MulticlassAccuracy(k, average="micro")}
    if split != "train":
        metrics |= {
            "f1": tm.classification.MulticlassF1Score(k, average="macro"),
            "auroc": tm.classification.MulticlassAUROC(k, average="macro"),
        }
    return tm.MetricCollection(metrics, prefix=f"{split}/", compute_groups=False)
