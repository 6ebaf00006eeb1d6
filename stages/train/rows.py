"""The rows the train stage (and each tuning trial) fits on: held in memory or streamed.

`train.in_memory: auto` holds the fit and val rows as tensors when, as float32 model input,
they fit 2 GiB and a quarter of the memory available now (stages.common.fit_rows); else
each batch is read from the split files on disk (stages.common.splits), so memory stays
flat however large the data. Both paths give the same batches (same permutation, same
float32 scaling).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.common import fit_rows, splits


@dataclass
class FitData:
    X: object  # np.ndarray in memory, or splits.Rows / splits.Stacked streamed
    y: np.ndarray
    val_X: object
    val_y: np.ndarray
    scale: float | None  # uint8 pixels -> float32 factor (None: X stored as float)
    in_memory: bool
    files: list[Path]


def load(source: Path, prepared: Path, fit_on: str, setting: str | bool) -> FitData:
    X, y, scale, files = fit_rows.open_rows(source, fit_on)
    val = splits.open_split(Path(prepared) / "val", "X", "y")
    val_X, val_y = val["X"], np.asarray(val["y"])
    held = fit_rows.in_memory(setting, fit_rows.float_bytes(X, val_X))
    if held:  # stored dtype (uint8 pixels stay uint8): scaled per batch in both paths
        X, val_X = np.asarray(X), np.asarray(val_X)
    return FitData(X, y, val_X, val_y, scale, held, files)
