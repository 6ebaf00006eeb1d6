"""The one latency timer: every place that times a model (evaluate's candidates, compress's
variants, static INT8's fp32-first-conv choice, tune's latency objective) calls this, each
with its own warm-up count and budget."""

from __future__ import annotations

import time
from collections.abc import Callable


def call_seconds(
    call: Callable[[], object],
    warmup: int = 1,
    repeats: int = 20,
    budget_s: float | None = None,
    min_calls: int = 1,
) -> list[float]:
    """Seconds of each timed `call()`, after `warmup` untimed calls (lazy init, caches).

    Times `repeats` calls, or stops early once `budget_s` seconds have passed since the
    first timed call and at least `min_calls` were timed (None: no budget).
    """
    for _ in range(warmup):
        call()
    times: list[float] = []
    deadline = None if budget_s is None else time.perf_counter() + budget_s
    while len(times) < repeats and (
        len(times) < min_calls or deadline is None or time.perf_counter() < deadline
    ):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times
