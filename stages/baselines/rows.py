"""How many train rows, and which, a baseline is fit on (`baselines.max_rows`, `model_max_rows`).

A fit on more rows than a cap uses a seeded sample of that many: stratified by class for
classification (each class keeps its share, largest remainders round), uniform for
regression. The sample is the same for every model with the same cap and seed.
"""

from __future__ import annotations

import numpy as np

from stages.schema.baselines import BaselinesParams


def cap(params: BaselinesParams, name: str) -> int | None:
    """The most train rows model `name` is fit on (None = all)."""
    caps = [c for c in (params.max_rows, params.model_max_rows.get(name)) if c is not None]
    return min(caps) if caps else None


def sample(y: np.ndarray, n: int, task: str, seed: int) -> np.ndarray:
    """Sorted indices of `n` of the rows of `y` (all of them when `n >= len(y)`).

    Args:
        y: the train targets.
        n: rows to keep.
        task: "classification" keeps each class's share of the rows; else uniform.
        seed: the sample's seed.

    Returns:
        Row indices into `y`, ascending.
    """
    total = len(y)
    if n >= total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    if task != "classification":
        return np.sort(rng.choice(total, size=n, replace=False))
    classes, inverse = np.unique(y, return_inverse=True)
    counts = np.bincount(inverse)
    share = counts * (n / total)
    take = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - take), kind="stable")
    take[order[: n - int(take.sum())]] += 1
    picked = [
        rng.choice(np.flatnonzero(inverse == k), size=int(take[k]), replace=False)
        for k in range(len(classes))
    ]
    return np.sort(np.concatenate(picked))
