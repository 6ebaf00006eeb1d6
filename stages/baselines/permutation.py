"""sklearn's permutation importance, with the permuted copies scored in a few large predicts.

`sklearn.inspection.permutation_importance` scores one copy of the rows per feature and
shuffle: 192 `predict` calls for digits' 64 pixels and 3 shuffles. For the models without
tree importances most of a call is fixed cost, not rows (hist gradient boosting: 10 ms to
predict 270 rows through its 500 trees, 1.1 s for all 51,840 rows at once), so the baselines
stage spent longer on importances than on fitting. This builds the same permuted copies
sklearn does (one shuffle sequence from the same seed, applied cumulatively to every
column), stacks them `CHUNK_VALUES` values at a time and predicts them in pieces of
`PIECE_ROWS` rows. The scores are the estimator's own `score` (`accuracy_score`,
`r2_score`), as with sklearn's default `scoring=None`, and `tests/test_baselines.py` holds
the result to sklearn's within float rounding. One model can differ by a row: kNN, whose
distances to equally near neighbours may round differently in a larger batch, so a tie
goes the other way (digits: 1 of 270 val rows, 0.0012). The pieces are the same at any
thread count, so the result does not depend on how busy the machine was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.metrics import accuracy_score, r2_score
from threadpoolctl import threadpool_limits

CHUNK_VALUES = 4_000_000  # values of stacked copies built at once (16 MB as float32)
PIECE_ROWS = 4096  # rows per predict call; fixed, so no result depends on the thread count


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
    """Mean drop in `model`'s score over `n_repeats` shuffles of each column of `X`. The
    copies are predicted in pieces of about `PIECE_ROWS` rows, the same pieces whatever
    `workers` is; with `workers` > 1 the pieces run on that many threads, one OpenMP thread
    and one joblib job each (libsvm's predict, SVC's, is single-threaded otherwise)."""
    n, n_features = X.shape
    metric = accuracy_score if is_classifier(model) else r2_score
    baseline = metric(y, model.predict(X))
    orders = _shuffles(n, n_repeats, seed)
    copies = [(col, order) for col in range(n_features) for order in orders]
    per_piece = max(1, PIECE_ROWS // n)  # copies per predict call
    per_chunk = max(1, CHUNK_VALUES // max(1, n * n_features) // per_piece) * per_piece
    drops = np.empty(len(copies))
    with _predictor(model, workers) as predict:
        for start in range(0, len(copies), per_chunk):
            part = copies[start : start + per_chunk]
            stacked = np.tile(X, (len(part), 1))
            for k, (col, order) in enumerate(part):
                stacked[k * n : (k + 1) * n, col] = X[order, col]
            step = per_piece * n
            pred = np.concatenate(
                list(predict(stacked[i : i + step] for i in range(0, len(stacked), step)))
            )
            for k in range(len(part)):
                drops[start + k] = baseline - metric(y, pred[k * n : (k + 1) * n])
    return drops.reshape(n_features, n_repeats).mean(axis=1)


@contextmanager
def _predictor(model: Any, workers: int) -> Iterator[Callable]:
    """`predict(pieces)` -> their predictions in order: in this thread, or on `workers`
    threads. OpenMP limits are per thread (threadpoolctl sets them with
    `omp_set_num_threads`), so each pool thread sets its own; a model's `n_jobs` is 1 while
    the pool runs, so the pool is the only parallelism."""
    if workers <= 1:
        yield lambda pieces: map(model.predict, pieces)
        return
    jobs = model.get_params().get("n_jobs", "absent")
    if jobs != "absent":
        model.set_params(n_jobs=1)
    try:
        with ThreadPoolExecutor(workers, initializer=_one_openmp_thread) as pool:
            yield lambda pieces: pool.map(model.predict, pieces)
    finally:
        if jobs != "absent":
            model.set_params(n_jobs=jobs)


def _one_openmp_thread() -> None:
    threadpool_limits(limits=1, user_api="openmp")  # this thread's OpenMP loops: 1 thread
