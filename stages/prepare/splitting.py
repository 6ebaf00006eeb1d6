"""Seeded train/val/test split, stratified for classification; no row in two splits."""

from __future__ import annotations

import math

import numpy as np

from stages.runtime.errors import DataError


def split_indices(
    y: np.ndarray,
    task: str,
    val_size: float,
    test_size: float,
    seed: int,
    classes: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Return disjoint sorted index arrays {"train", "val", "test"} covering every row."""
    # Imported here: params and data are refused before scikit-learn's ~1 s import is paid.
    from sklearn.model_selection import train_test_split

    n = len(y)
    idx = np.arange(n)
    stratify = y if task == "classification" else None
    if stratify is not None:
        _check_stratifiable(y, val_size, test_size, classes)
    elif math.floor(n * (1 - val_size - test_size)) < 2 or n * min(val_size, test_size) < 1:
        raise DataError(f"{n} rows are too few for val_size={val_size}, test_size={test_size}")
    try:
        rest, test = train_test_split(
            idx, test_size=test_size, random_state=seed, stratify=stratify
        )
        val_frac = val_size / (1.0 - test_size)
        train, val = train_test_split(
            rest,
            test_size=val_frac,
            random_state=seed,
            stratify=None if stratify is None else y[rest],
        )
    except ValueError as exc:
        raise DataError(
            f"cannot split {n} rows with val_size={val_size}, test_size={test_size}: {exc}"
        ) from None
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _check_stratifiable(
    y: np.ndarray, val_size: float, test_size: float, classes: list[str] | None
) -> None:
    counts = np.bincount(y)
    k = int((counts > 0).sum())
    rarest = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
    name = classes[rarest] if classes else str(rarest)
    if counts[rarest] < 3:
        raise DataError(
            f"class {name!r} has {counts[rarest]} row(s); a stratified "
            "train/val/test split needs at least 3 per class (add rows or "
            "merge/drop the class)"
        )
    n = len(y)
    for split, frac in (("test", test_size), ("val", val_size)):
        rows = math.ceil(n * frac)
        if rows < k:
            raise DataError(
                f"data.{split}_size = {frac} gives {rows} {split} rows for {k} "
                f"classes; a stratified split needs at least one per class "
                f"(raise data.{split}_size or add rows)"
            )
