"""`.npz` sources with arrays `X` (N, F) | (N, T, F) | (N, C, H, W) and `y` (N,)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from stages.prepare.sources.raw import RawData, fingerprint_files
from stages.runtime.errors import DataError
from stages.schema.data import DataParams

_MODALITY = {2: "table", 3: "sequence", 4: "image"}


def load_npz_source(path: Path, data: DataParams) -> RawData:
    size = path.stat().st_size
    if size > data.max_bytes:
        raise DataError(f"{path}: {size:,} bytes exceeds data.max_bytes = {data.max_bytes:,}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            for key in ("X", "y"):
                if key not in keys:
                    raise DataError(
                        f"{path}: missing array {key!r}; found {keys}; "
                        "expected X (features) and y (targets)"
                    )
            X, y = npz["X"], npz["y"]
            classes = [str(c) for c in npz["classes"]] if "classes" in keys else None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file: {exc}") from None
    except ValueError as exc:  # object arrays would need pickle: refused
        raise DataError(
            f"{path}: cannot load without pickle ({exc}); save numeric arrays with np.savez"
        ) from None
    if X.ndim not in _MODALITY:
        raise DataError(
            f"{path}: X has shape {X.shape}; expected (N, F), (N, T, F) or (N, C, H, W)"
        )
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{path}: y has shape {y.shape}; expected one target per row (N,)")
    if len(X) != len(y):
        raise DataError(f"{path}: X has {len(X)} rows but y has {len(y)}; they must match")
    if len(X) == 0:
        raise DataError(f"{path}: X and y are empty; expected at least one row")
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise DataError(f"{path}: X has dtype {X.dtype}; expected real numbers")
    X = X.astype(np.float32, copy=False)
    bad = ~np.isfinite(X.reshape(len(X), -1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        value = X.reshape(len(X), -1)[row, col]
        raise DataError(
            f"{path}: X row {row} has a non-finite value ({value}) at flat "
            f"feature {col}; expected finite numbers"
        )
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise DataError(f"{path}: y row {int(np.argmin(np.isfinite(y)))} is not finite")
    if classes is not None:
        _check_label_range(path, y, classes)
    features: np.ndarray | pd.DataFrame = X
    if X.ndim == 2:  # a table: preprocessing (imputation, scaling) is fitted after the split
        features = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])], copy=False)
    return RawData(
        name=path.stem,
        modality=_MODALITY[X.ndim],
        X=features,
        y=y,
        classes=classes,
        task_hint="classification" if classes is not None else None,
        fingerprint=fingerprint_files([path], path.parent),
    )


def _check_label_range(path: Path, y: np.ndarray, classes: list[str]) -> None:
    """With an explicit `classes` array, y must hold indices 0..len(classes)-1."""
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{path}: y has dtype {y.dtype}; with a 'classes' array y must hold "
            "integer class indices"
        )
    bad = np.flatnonzero((y < 0) | (y >= len(classes)))
    if bad.size:
        raise DataError(
            f"{path}: y row {bad[0]} = {y[bad[0]]} is outside 0..{len(classes) - 1} "
            f"({len(classes)} classes in 'classes'); {bad.size} row(s) affected"
        )
