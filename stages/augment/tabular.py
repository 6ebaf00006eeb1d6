"""Offline augmentation of table/sequence rows: Gaussian jitter and same-class mixup."""

from __future__ import annotations

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


def mixup_same_class(
    X: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    p: float,
    alpha: float,
    classification: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend a random p of rows with a partner row.

    Classification: the partner has the same class, so the label is unchanged.
    Regression: any partner, and the target is blended with the same weight.
    """
    n = len(X)
    rows = np.flatnonzero(rng.random(n) < p)
    partner = np.empty(len(rows), dtype=np.int64)
    if classification:
        for cls in np.unique(y[rows]):
            same = y[rows] == cls
            partner[same] = rng.choice(np.flatnonzero(y == cls), size=int(same.sum()))
    else:
        partner[:] = rng.integers(0, n, size=len(rows))
    lam = rng.beta(alpha, alpha, size=len(rows)).astype(np.float32)
    lam_x = lam.reshape(-1, *([1] * (X.ndim - 1)))
    X_out, y_out = X.copy(), y.copy()
    X_out[rows] = lam_x * X[rows] + (1 - lam_x) * X[partner]
    if not classification:
        y_out[rows] = lam * y[rows] + (1 - lam) * y[partner]
    return X_out, y_out
