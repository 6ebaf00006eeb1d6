"""What every source reader returns, and content fingerprints of source data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

Modality = Literal["image", "table", "sequence"]


@dataclass
class RawData:
    """Unsplit data as read from the source.

    `X` is a DataFrame for tables (preprocessing is fitted after the split) and an array
    for images (N, C, H, W) and sequences (N, T, F).
    """

    name: str
    modality: Modality
    X: pd.DataFrame | np.ndarray
    y: np.ndarray
    fingerprint: str
    task_hint: str | None = None
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    image_scale: float | None = None
    source_columns: list[str] | None = None  # tables: every feature column of the file
    files: list[Path] | None = None  # image folders: one file per row of X
    bad_files: list[str] = field(default_factory=list)  # image folders: left out (on_bad_image)


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(str((arr.dtype.str, arr.shape)).encode())
        h.update(memoryview(arr).cast("B"))
    return "sha256:" + h.hexdigest()


def fingerprint_files(paths: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()
