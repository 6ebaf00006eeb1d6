"""Offline augmentation of table/sequence rows: Gaussian jitter and same-class mixup, one
chunk of rows at a time (stages.augment.stage), so no copy of a split is whole in memory.

A copy's random decisions are drawn in two independent streams: the jitter's (per chunk,
in order: which rows, then their noise) and the mixup's (for the whole split up front:
which rows, their partners and weights; a few bytes per row). Mixup blends a row, jittered
or not, with its partner as stored (read from the split on disk), so a chunk never needs
another chunk's noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def jitter(
    X: np.ndarray,
    rng: np.random.Generator,
    p: float,
    std: float,
    feature_std: np.ndarray,
    mask: np.ndarray,
) -> np.ndarray:
    """Add N(0, (std * feature_std)^2) noise to the masked features of a random p of rows."""
    rows = rng.random(len(X)) < p
    noise = rng.standard_normal(X.shape, dtype=np.float32) * (std * feature_std * mask)
    return np.where(rows.reshape(-1, *([1] * (X.ndim - 1))), X + noise, X).astype(np.float32)


@dataclass(frozen=True)
class MixupPlan:
    """Which rows of a split are blended (ascending), with which partner and weight."""

    rows: np.ndarray
    partner: np.ndarray
    lam: np.ndarray
    classification: bool


def plan_mixup(
    y: np.ndarray, rng: np.random.Generator, p: float, alpha: float, classification: bool
) -> MixupPlan:
    """Pick a random p of rows and a partner for each: of the same class (classification:
    the label is unchanged), or any row (regression: the target is blended too)."""
    n = len(y)
    rows = np.flatnonzero(rng.random(n) < p)
    partner = np.empty(len(rows), dtype=np.int64)
    if classification:
        for cls in np.unique(y[rows]):
            same = y[rows] == cls
            partner[same] = rng.choice(np.flatnonzero(y == cls), size=int(same.sum()))
    else:
        partner[:] = rng.integers(0, n, size=len(rows))
    lam = rng.beta(alpha, alpha, size=len(rows)).astype(np.float32)
    return MixupPlan(rows, partner, lam, classification)


def apply_mixup(
    X: np.ndarray,
    y: np.ndarray,
    start: int,
    plan: MixupPlan,
    partner_rows: Callable[[np.ndarray], np.ndarray],
    y_all: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend the planned rows of the chunk `X`, `y` (split rows start..start+len(X));
    `partner_rows(idx)` reads split rows by index."""
    lo, hi = np.searchsorted(plan.rows, [start, start + len(X)])
    if lo == hi:
        return X, y
    rows, partner, lam = plan.rows[lo:hi] - start, plan.partner[lo:hi], plan.lam[lo:hi]
    lam_x = lam.reshape(-1, *([1] * (X.ndim - 1)))
    X_out, y_out = X.astype(np.float32, copy=True), y.copy()
    X_out[rows] = lam_x * X_out[rows] + (1 - lam_x) * partner_rows(partner)
    if not plan.classification:
        y_out[rows] = lam * y[rows] + (1 - lam) * y_all[partner]
    return X_out, y_out


def feature_std(chunks) -> np.ndarray:
    """Per-feature (last axis) standard deviation over row chunks, merged chunk by chunk
    (Chan et al.'s pairwise update, in float64): the whole split is never in memory."""
    n, mean, m2 = 0, None, None
    for part in chunks:
        flat = np.asarray(part, dtype=np.float64).reshape(-1, part.shape[-1])
        k = len(flat)
        if not k:
            continue
        mu = flat.mean(axis=0)
        sq = ((flat - mu) ** 2).sum(axis=0)
        if mean is None:
            n, mean, m2 = k, mu, sq
            continue
        delta = mu - mean
        total = n + k
        mean = mean + delta * (k / total)
        m2 = m2 + sq + delta**2 * (n * k / total)
        n = total
    if mean is None:
        raise ValueError("feature_std of no rows")
    return np.sqrt(m2 / n).astype(np.float32)
