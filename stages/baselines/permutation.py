"""sklearn's permutation importance, with the permuted copies scored in a few large predicts.

`sklearn.inspection.permutation_importance` scores one copy of the rows per feature and
shuffle: 192 `predict` calls for digits' 64 pixels and 3 shuffles. For the models without
tree importances most of a call is fixed cost, not rows (hist gradient boosting: 10 ms to
predict 270 rows through its 500 trees, 1.1 s for all 51,840 rows at once), so the baselines
stage spent longer on importances than on fitting. This builds the same permuted copies
sklearn does (one shuffle sequence from the same seed, applied cumulatively to every
column), stacks them and predicts them in chunks of `CHUNK_VALUES` values. The scores are
the estimator's own `score` (accuracy, R²), as with sklearn's default `scoring=None`, and
`tests/test_baselines.py` holds the result to sklearn's within float rounding. One model
can differ by a row: kNN, whose distances to equally near neighbours may round differently
in a larger batch, so a tie goes the other way (digits: 1 of 270 val rows, 0.0012).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.metrics import r2_score
from threadpoolctl import threadpool_limits

CHUNK_VALUES = 4_000_000  # values of stacked copies per predict (16 MB of float32)


def _shuffles(n_rows: int, n_repeats: int, seed: int) -> list[np.ndarray]:
    """Row order of each repeat's permuted column, as sklearn derives it: one int drawn from
    `RandomState(seed)` seeds every column's `RandomState`, which shuffles an index array in
    place once per repeat, and each shuffle permutes the column the previous one left."""
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    rs = np.random.RandomState(column_seed)
    shuffling, order, orders = np.arange(n_rows), np.arange(n_rows), []
    for _ in range(n_repeats):
        rs.shuffle(shuffling)
        order = order[shuffling]
        orders.append(order)
    return orders


def importances(
    model: Any, X: np.ndarray, y: np.ndarray, n_repeats: int, seed: int, workers: int = 1
) -> np.ndarray:
    """Mean drop in `model`'s score over `n_repeats` shuffles of each column of `X`. Each
    chunk's predict is split over `workers` threads, one OpenMP/BLAS thread each: libsvm's
    predict (SVC) runs on one core otherwise, and the others release the GIL as well."""
    n, n_features = X.shape
    classifier = is_classifier(model)
    baseline = _scores(classifier, y, model.predict(X)[None])[0]
    orders = _shuffles(n, n_repeats, seed)
    copies = [(col, order) for col in range(n_features) for order in orders]
    per_chunk = max(1, CHUNK_VALUES // max(1, n * n_features))
    drops = np.empty(len(copies))
    with ThreadPoolExecutor(workers) as pool, threadpool_limits(1 if workers > 1 else None):
        for start in range(0, len(copies), per_chunk):
            part = copies[start : start + per_chunk]
            stacked = np.tile(X, (len(part), 1))
            for k, (col, order) in enumerate(part):
                stacked[k * n : (k + 1) * n, col] = X[order, col]
            pieces = np.array_split(stacked, min(workers, len(stacked)))
            pred = np.concatenate(list(pool.map(model.predict, pieces)))
            scores = _scores(classifier, y, pred.reshape(len(part), n, *pred.shape[1:]))
            drops[start : start + len(part)] = baseline - scores
    return drops.reshape(n_features, n_repeats).mean(axis=1)


def _scores(classifier: bool, y: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """`score` of each row of predictions: accuracy (as `accuracy_score` computes it: the
    mean of the matches), or R² for regressors (`r2_score`, multi-output averaged)."""
    if classifier:
        return (preds == y).mean(axis=1)
    return np.array([r2_score(y, p) for p in preds])
