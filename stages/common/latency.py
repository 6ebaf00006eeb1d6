"""Inference latency, measured the same way for every candidate.

Each candidate's `predict` runs on prepared test rows (batch 1: one row; batch 256: test rows
tiled to 256) under the same thread limit (torch, OpenMP and BLAS pools), after one warm-up
call; the median of up to `repeats` timed calls within `budget_s` is reported in ms.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from lightning_modules.timing import call_seconds

BATCHES = (1, 256)


@contextlib.contextmanager
def limited_threads(n: int) -> Iterator[None]:
    """Cap the numeric thread pools of numpy/sklearn (threadpoolctl) and torch alike."""
    torch_threads = None
    try:
        import torch

        torch_threads = torch.get_num_threads()
        torch.set_num_threads(n)
    except ImportError:
        pass
    try:
        with threadpool_limits(n):
            yield
    finally:
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)


def batch_of(X: np.ndarray, size: int) -> np.ndarray:
    reps = -(-size // len(X))
    return np.concatenate([X] * reps)[:size] if reps > 1 else X[:size]


def measure(
    predict: Callable[[np.ndarray], object],
    X: np.ndarray,
    repeats: int = 20,
    budget_s: float = 1.0,
    threads: int = 1,
) -> dict[str, float]:
    """Median milliseconds per call, keyed `latency_ms_b1` and `latency_ms_b256`."""
    out = {}
    with limited_threads(threads):
        for size in BATCHES:
            batch = batch_of(X, size)
            times = call_seconds(lambda b=batch: predict(b), 1, repeats, budget_s)
            out[f"latency_ms_b{size}"] = round(float(np.median(times)) * 1000, 4)
    return out
