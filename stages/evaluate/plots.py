"""Evaluate's plots: data files for `dvc plots` and PNGs for the report and MLflow.

Drawn by scikit-learn's displays. Classification: confusion matrix (CSV for dvc's confusion
template + PNG) and reliability diagram (`CalibrationDisplay`: top-class confidence vs how
often it is right, the curve behind the ECE) of the best candidate; ROC and
precision-recall curves of every candidate with probabilities on binary tasks.
Regression: predicted-vs-actual and residuals (`PredictionErrorDisplay`). Always: the
headline-vs-latency scatter with marker area proportional to bytes on disk, the
non-dominated candidates marked (the Pareto view).
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
    bins: int = 15,
) -> list[Path]:
    """Write every plot for this task into `out`; returns the PNG paths in report order."""
    pngs: list[Path] = []
    pred, proba = preds[best]
    if task == "classification":
        names = classes or [str(i) for i in range(int(max(y.max(), pred.max())) + 1)]
        _rows(out / "confusion.csv", ["actual", "predicted"], zip(
            [names[i] for i in y], [names[i] for i in pred], strict=True))  # fmt: skip
        pngs.append(_confusion(out / "confusion.png", y, pred, names, best))
        if proba is not None:
            pngs.append(_calibration(out / "calibration.png", y, proba, best, bins))
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
    from sklearn.metrics import ConfusionMatrixDisplay

    k = len(names)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(0.45 * k + 2.5, 0.45 * k + 2.2))
    ConfusionMatrixDisplay.from_predictions(
        y, pred, labels=list(range(k)), display_labels=names, ax=ax, cmap="Blues",
        colorbar=False, xticks_rotation=45, text_kw={"fontsize": 7},
    )  # fmt: skip
    ax.tick_params(labelsize=7)
    ax.set_title(f"confusion matrix: {best}", fontsize=9)
    save_figure(fig, path)
    return path


def _calibration(path, y, proba, best, bins: int) -> Path:
    """Reliability diagram of the top class (multiclass included): confidence vs accuracy."""
    from sklearn.calibration import CalibrationDisplay

    correct = (proba.argmax(axis=1) == y).astype(int)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    CalibrationDisplay.from_predictions(
        correct, proba.max(axis=1), n_bins=bins, strategy="uniform", name=best, ax=ax
    )
    ax.set_xlabel("top-class confidence")
    ax.set_ylabel("fraction correct")
    ax.legend(fontsize=7)
    ax.set_title(f"calibration (test, {bins} bins): {best}", fontsize=9)
    save_figure(fig, path)
    return path


def _binary_curves(out, y, preds) -> list[Path]:
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay, roc_curve

    plt = pyplot()
    fig_roc, ax_roc = plt.subplots(figsize=(4.5, 4))
    fig_pr, ax_pr = plt.subplots(figsize=(4.5, 4))
    rows = []
    for i, (name, (_, proba)) in enumerate((n, p) for n, p in preds.items() if p[1] is not None):
        RocCurveDisplay.from_predictions(
            y, proba[:, 1], name=name, ax=ax_roc, plot_chance_level=i == 0,
            curve_kwargs={"lw": 1.2},
        )  # fmt: skip
        PrecisionRecallDisplay.from_predictions(
            y, proba[:, 1], name=name, ax=ax_pr, curve_kwargs={"lw": 1.2}
        )
        fpr, tpr, _ = roc_curve(y, proba[:, 1])
        rows.extend((name, f, t) for f, t in zip(fpr, tpr, strict=True))
    _rows(out / "roc.csv", ["candidate", "fpr", "tpr"], rows)
    for ax in (ax_roc, ax_pr):
        ax.legend(fontsize=6)
    ax_roc.set_title("ROC (test)", fontsize=9)
    ax_pr.set_title("precision-recall (test)", fontsize=9)
    save_figure(fig_roc, out / "roc.png")
    save_figure(fig_pr, out / "pr.png")
    return [out / "roc.png", out / "pr.png"]


def _regression(out, y, pred, best) -> list[Path]:
    from sklearn.metrics import PredictionErrorDisplay

    plt = pyplot()
    written = []
    for kind, file, title in (
        ("actual_vs_predicted", "pred_vs_actual.png", "predicted vs actual"),
        ("residual_vs_predicted", "residuals.png", "residuals (actual - predicted)"),
    ):
        fig, ax = plt.subplots(figsize=(4.5, 4))
        PredictionErrorDisplay.from_predictions(
            y, pred, kind=kind, ax=ax, random_state=0, scatter_kwargs={"s": 10, "alpha": 0.6}
        )
        ax.set_title(f"{title}: {best}", fontsize=9)
        save_figure(fig, out / file)
        written.append(out / file)
    return written


def _pareto(path: Path, table: dict[str, Any], headline: str) -> Path:
    """Headline vs latency, marker area ~ bytes. The leaderboard's non-dominated candidates
    (`pareto`: no other is at least as good on quality, latency and bytes and better on one)
    are filled and ringed, the dominated ones hollow and grey."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    sizes = np.array([max(r.get("bytes") or 1, 1) for r in table.values()], dtype=np.float64)
    area = 30 + 600 * sizes / sizes.max()
    labelled: set[str] = set()
    keys: list[str] = []
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
        key = str(row.get("rank", len(keys) + 1))  # a short key on the point, the name beside
        keys.append(f"{key}  {name}" + ("  *" if front else ""))
        ax.annotate(
            key, (x, v), fontsize=7, xytext=(3, 3), textcoords="offset points",
            fontweight="bold" if front else "normal",
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 latency (ms, log scale)")
    ax.set_ylabel(f"test {headline}")
    ax.set_title("quality vs latency (marker area ~ bytes on disk)", fontsize=9)
    ax.text(
        1.02, 1.0, "rank  candidate  (* non-dominated)\n" + "\n".join(keys),
        transform=ax.transAxes, va="top", fontsize=7, family="monospace",
    )  # fmt: skip
    if labelled:
        legend = ax.legend(fontsize=7, title="quality, latency, bytes", title_fontsize=7)
        for handle in legend.legend_handles:  # one marker size, whatever the first one's bytes
            handle.set_sizes([40])
    save_figure(fig, path)
    return path
