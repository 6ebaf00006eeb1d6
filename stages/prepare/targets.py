"""Target handling: decide the task and encode class labels as 0..K-1."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.prepare.sources.raw import RawData
from stages.runtime.errors import DataError

MAX_INT_CLASSES = 20


@dataclass(frozen=True)
class Target:
    task: str  # "classification" | "regression"
    y: np.ndarray  # int64 class indices or float32 values
    classes: list[str] | None


def resolve_target(raw: RawData, task: str, max_classes: int) -> Target:
    """Pick the task (`auto` decides by dtype and cardinality) and encode y."""
    y = pd.Series(raw.y)
    numeric = pd.to_numeric(y, errors="coerce") if not pd.api.types.is_bool_dtype(y) else y
    is_numeric = not pd.api.types.is_bool_dtype(y) and numeric.notna().all()
    if task == "auto":
        task = raw.task_hint or _guess_task(y, numeric, is_numeric)
    if task == "regression":
        if not is_numeric:
            bad = y[numeric.isna()].iloc[0]
            raise DataError(
                f"regression needs a numeric target, found {bad!r}; "
                "set data.task: classification or choose another data.target"
            )
        values = numeric.to_numpy(dtype=np.float32)
        if len(values) and np.all(values == values[0]):
            raise DataError(
                f"the regression target is constant (every row = {values[0]:g}): there is "
                "nothing to learn; choose another data.target"
            )
        return Target("regression", values, None)
    return _encode_classes(raw, y, numeric if is_numeric else None, max_classes)


def _guess_task(y: pd.Series, numeric: pd.Series, is_numeric: bool) -> str:
    if not is_numeric:
        return "classification"
    values = numeric.to_numpy(dtype=np.float64)
    integral = np.all(np.mod(values, 1) == 0)
    if integral and numeric.nunique() <= MAX_INT_CLASSES:
        return "classification"
    return "regression"


def _encode_classes(
    raw: RawData, y: pd.Series, numeric: pd.Series | None, max_classes: int
) -> Target:
    if raw.classes is not None and np.issubdtype(np.asarray(raw.y).dtype, np.integer):
        codes = np.asarray(raw.y, dtype=np.int64)
        present = np.unique(codes)
        classes = [raw.classes[i] for i in present]
        codes = np.searchsorted(present, codes)
    else:
        values = numeric if numeric is not None else y.astype(str)
        uniques = np.unique(values.to_numpy())
        n_unique, n_rows = len(uniques), len(y)
        if n_unique > max_classes or (n_rows >= 50 and n_unique > 0.5 * n_rows):
            raise DataError(
                f"target has {n_unique:,} distinct values in {n_rows:,} rows: it looks "
                "like free text or an ID, not a class label (data.max_classes = "
                f"{max_classes}); choose another data.target, or set data.task: regression "
                "for a numeric target"
            )
        codes = np.searchsorted(uniques, values.to_numpy())
        classes = [_label(u) for u in uniques]
    if len(classes) < 2:
        raise DataError(
            f"only one class ({classes[0]!r}) in the target; classification needs at least 2"
        )
    return Target("classification", codes.astype(np.int64), classes)


def _label(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
