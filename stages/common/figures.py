"""Matplotlib without a display, and PNG figures written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages.common import io


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 100) -> None:
    """Save a figure as PNG atomically and free it."""
    fig.tight_layout()
    with io.atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
