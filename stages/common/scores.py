"""One metric code path for every candidate (baselines val scores, evaluate test scores).

Classification: accuracy, macro-F1, per-class precision/recall, ROC-AUC (binary, or macro
one-vs-rest), log-loss and expected calibration error where there are probabilities.
Regression: RMSE, MAE, R².
"""

from __future__ import annotations

from typing import Any

import numpy as np

# headline metric -> True when higher is better
HEADLINES = {
    "accuracy": True,
    "macro_f1": True,
    "r2": True,
    "rmse": False,
    "mae": False,
}
TASK_HEADLINES = {
    "classification": ("accuracy", "macro_f1"),
    "regression": ("r2", "rmse", "mae"),
}


def default_headline(task: str) -> str:
    return TASK_HEADLINES[task][0]


def score(
    task: str,
    y: np.ndarray,
    pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: list[str] | None = None,
    bins: int = 15,
) -> dict[str, Any]:
    """All metrics of one candidate on one split.

    Args:
        task: "classification" or "regression".
        y: true class indices (N,) or targets (N,).
        pred: predicted class indices or values (N,).
        proba: class probabilities (N, K), or None when the model has none.
        classes: class names, index-aligned with `proba` columns.
        bins: equal-width confidence bins for the calibration error.

    Returns:
        Flat scalar metrics plus `per_class` ({name: {precision, recall, support}}) for
        classification; metrics that cannot be computed are None.
    """
    if task == "regression":
        return regression(y, pred)
    return classification(y, pred, proba, classes, bins)


def regression(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """sklearn's RMSE, MAE and R² (None when the targets are constant: R² is undefined)."""
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    constant = bool(np.all(y == y[0])) if len(y) else True
    return {
        "rmse": float(root_mean_squared_error(y, pred)),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": None if constant else float(r2_score(y, pred)),
    }


def classification(
    y: np.ndarray,
    pred: np.ndarray,
    proba: np.ndarray | None,
    classes: list[str] | None,
    bins: int = 15,
) -> dict[str, Any]:
    from sklearn.metrics import f1_score, log_loss, precision_recall_fscore_support, roc_auc_score

    y = np.asarray(y, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    k = len(classes) if classes else int(max(y.max(), pred.max()) + 1)
    names = classes or [str(i) for i in range(k)]
    labels = np.arange(k)
    present = np.unique(y)
    prec, rec, _, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    out: dict[str, Any] = {
        "accuracy": float((y == pred).mean()),
        "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
        "roc_auc": None,
        "log_loss": None,
        "ece": None,
    }
    if proba is not None:
        proba = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0)
        proba = proba / proba.sum(axis=1, keepdims=True)
        out["log_loss"] = float(log_loss(y, proba, labels=labels))
        out["ece"] = expected_calibration_error(y, proba, bins)
        if len(present) == k == 2:
            out["roc_auc"] = float(roc_auc_score(y, proba[:, 1]))
        elif len(present) == k > 2:
            out["roc_auc"] = float(roc_auc_score(y, proba, multi_class="ovr", labels=labels))
    out["per_class"] = {
        names[i]: {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "support": int(support[i]),
        }
        for i in range(k)
    }
    return out


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = 15) -> float:
    """Weighted mean |accuracy - confidence| over equal-width bins of top-class confidence.

    torchmetrics' `multiclass_calibration_error` (norm l1) computes the same number (a test
    checks it), but importing it loads torch (~1.5 s) into stages that need none (baselines).
    """
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    idx = np.minimum((conf * bins).astype(np.int64), bins - 1)
    count = np.bincount(idx, minlength=bins)
    gap = np.abs(
        np.bincount(idx, weights=correct, minlength=bins)
        - np.bincount(idx, weights=conf, minlength=bins)
    )
    return float(gap.sum() / max(count.sum(), 1))
