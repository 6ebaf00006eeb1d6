"""Evaluate's plots: data files for `dvc plots` and PNGs for the report and MLflow.

Classification: confusion matrix (CSV for dvc's confusion template + PNG) of the best
candidate; ROC and precision-recall curves of every candidate with probabilities on binary
tasks. Regression: predicted-vs-actual and residuals. Always: the headline-vs-latency
scatter with marker area proportional to bytes on disk, the non-dominated candidates marked
(the Pareto view).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from stages.common import io
from stages.common.figures import pyplot, save_figure


def write_all(
    out: Path,
    task: str,
    y: np.ndarray,
    preds: dict[str, tuple[np.ndarray, np.ndarray | None]],
    best: str,
    classes: list[str] | None,
    table: dict[str, Any],
    headline: str,
) -> list[Path]:
    """Write every plot for this task into `out`; returns the PNG paths in report order."""
    pngs: list[Path] = []
    pred, _ = preds[best]
    if task == "classification":
        names = classes or [str(i) for i in range(int(max(y.max(), pred.max())) + 1)]
        _rows(out / "confusion.csv", ["actual", "predicted"], zip(
            [names[i] for i in y], [names[i] for i in pred], strict=True))  # fmt: skip
        pngs.append(_confusion(out / "confusion.png", y, pred, names, best))
        if len(names) == 2:
            pngs.extend(_binary_curves(out, y, preds))
    else:
        _rows(out / "predictions.csv", ["actual", "predicted", "residual"], zip(
            y, pred, pred - y, strict=True))  # fmt: skip
        pngs.extend(_regression(out, y, pred, best))
    pngs.append(_pareto(out / "pareto.png", table, headline))
    return pngs


def _rows(path: Path, header: list[str], rows) -> None:
    with io.atomic_file(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(
            [f"{v:.6g}" if isinstance(v, float | np.floating) else v for v in row] for row in rows
        )


def _confusion(path, y, pred, names, best) -> Path:
    k = len(names)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(0.45 * k + 2.5, 0.45 * k + 2.2))
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            color = "white" if cm[i, j] > cm.max() / 2 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(k), names, fontsize=7, rotation=45)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"confusion matrix: {best}", fontsize=9)
    save_figure(fig, path)
    return path


def _binary_curves(out, y, preds) -> list[Path]:
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = pyplot()
    fig_roc, ax_roc = plt.subplots(figsize=(4.5, 4))
    fig_pr, ax_pr = plt.subplots(figsize=(4.5, 4))
    rows = []
    for name, (_, proba) in preds.items():
        if proba is None:
            continue
        fpr, tpr, _ = roc_curve(y, proba[:, 1])
        prec, rec, _ = precision_recall_curve(y, proba[:, 1])
        ax_roc.plot(fpr, tpr, label=name, lw=1.2)
        ax_pr.plot(rec, prec, label=name, lw=1.2)
        rows.extend((name, f, t) for f, t in zip(fpr, tpr, strict=True))
    _rows(out / "roc.csv", ["candidate", "fpr", "tpr"], rows)
    ax_roc.plot([0, 1], [0, 1], "k:", lw=0.8)
    for ax, (xl, yl) in ((ax_roc, ("false positive rate", "true positive rate")),
                         (ax_pr, ("recall", "precision"))):  # fmt: skip
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.legend(fontsize=6)
    ax_roc.set_title("ROC (test)", fontsize=9)
    ax_pr.set_title("precision-recall (test)", fontsize=9)
    save_figure(fig_roc, out / "roc.png")
    save_figure(fig_pr, out / "pr.png")
    return [out / "roc.png", out / "pr.png"]


def _regression(out, y, pred, best) -> list[Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(y, pred, s=10, alpha=0.6)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k:", lw=0.8)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(f"predicted vs actual: {best}", fontsize=9)
    save_figure(fig, out / "pred_vs_actual.png")
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(pred, pred - y, s=10, alpha=0.6)
    ax.axhline(0, color="k", ls=":", lw=0.8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (predicted - actual)")
    ax.set_title(f"residuals: {best}", fontsize=9)
    save_figure(fig, out / "residuals.png")
    return [out / "pred_vs_actual.png", out / "residuals.png"]


def _pareto(path: Path, table: dict[str, Any], headline: str) -> Path:
    """Headline vs latency, marker area ~ bytes. The leaderboard's non-dominated candidates
    (`pareto`: no other is at least as good on quality, latency and bytes and better on one)
    are filled and ringed, the dominated ones hollow and grey."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sizes = np.array([max(r.get("bytes") or 1, 1) for r in table.values()], dtype=np.float64)
    area = 30 + 600 * sizes / sizes.max()
    labelled = set()
    for (name, row), a in zip(table.items(), area, strict=True):
        x, v = row.get("latency_ms_b1"), row.get(headline)
        if x is None or v is None:
            continue
        front = bool(row.get("pareto"))
        label = "non-dominated" if front else "dominated"
        style = (
            {"color": "tab:blue", "edgecolors": "black", "linewidths": 1.2, "alpha": 0.8}
            if front
            else {"facecolors": "none", "edgecolors": "grey", "alpha": 0.7}
        )
        ax.scatter(x, v, s=a, label=None if label in labelled else label, **style)
        labelled.add(label)
        ax.annotate(
            name, (x, v), fontsize=7, xytext=(4, 4), textcoords="offset points",
            fontweight="bold" if front else "normal",
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 latency (ms, log scale)")
    ax.set_ylabel(f"test {headline}")
    ax.set_title("quality vs latency (marker area ~ bytes on disk)", fontsize=9)
    if labelled:
        legend = ax.legend(fontsize=7, title="quality, latency, bytes", title_fontsize=7)
        for handle in legend.legend_handles:  # one marker size, whatever the first one's bytes
            handle.set_sizes([40])
    save_figure(fig, path)
    return path
