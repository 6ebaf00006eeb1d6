"""Feature-importance plots of the baselines: top-k bars, or a heat map for images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stages.common.figures import pyplot, save_figure


def feature_names(schema: dict[str, Any], n: int) -> list[str]:
    """Names of the flattened model inputs, in column order."""
    shape = schema["input_shape"]
    if schema["modality"] == "table" and len(schema.get("feature_names") or []) == n:
        return list(schema["feature_names"])
    if schema["modality"] == "image":
        c, h, w = shape
        return [f"c{ci}_y{yi}_x{xi}" for ci in range(c) for yi in range(h) for xi in range(w)]
    if schema["modality"] == "sequence":
        feats = schema.get("feature_names") or [f"f{i}" for i in range(shape[-1])]
        return [f"t{t}_{f}" for t in range(shape[0]) for f in feats]
    return [f"f{i}" for i in range(n)]


def plot_importances(
    name: str,
    values: np.ndarray,
    names: list[str],
    schema: dict[str, Any],
    top: int,
    path: Path,
    kind: str = "impurity",
) -> None:
    """Write the importance figure of one model to `path` (PNG, atomically)."""
    plt = pyplot()
    if schema["modality"] == "image":
        c, h, w = schema["input_shape"]
        fig, ax = plt.subplots(figsize=(3.6, 3.2))
        im = ax.imshow(values.reshape(c, h, w).sum(axis=0), cmap="viridis")
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name}: pixel importance ({kind})", fontsize=9)
    else:
        order = np.argsort(-values, kind="stable")[:top][::-1]
        fig, ax = plt.subplots(figsize=(5.5, 0.25 * len(order) + 1.0))
        ax.barh([names[i] for i in order], values[order], color="#4c72b0")
        label = {"impurity": "impurity-based importance"}.get(kind, "val score drop when shuffled")
        ax.set_xlabel(label)
        ax.set_title(f"{name}: top {len(order)} features", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    save_figure(fig, path)
