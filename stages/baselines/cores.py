"""The threads a fit can use without oversubscribing the machine (`baselines.n_threads: auto`).

OpenMP fits (hist gradient boosting, BLAS) wait at a barrier after every parallel loop for
their slowest thread. On a core another process is busy on, that thread runs half the time,
and the whole fit with it: a 7 s two-thread fit took 24 s beside one busy process, against 11 s
on one thread (RESULTS.md). So before each fit, `FreeCores` reads what the rest of the machine
used since the previous reading (system CPU time minus this process's own) and offers the
cores that were left idle, at least one.
"""

from __future__ import annotations

import math
import os
import time
from typing import NamedTuple

import psutil
from threadpoolctl import threadpool_limits

MIN_WINDOW_S = 0.2  # shortest interval a reading is taken over (sleeps the difference)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _busy_seconds(t) -> float:
    """CPU seconds not idle, from `psutil.cpu_times()` (guest time is inside user on Linux)."""
    fields = ("user", "nice", "system", "irq", "softirq", "steal")
    return sum(getattr(t, f, 0.0) for f in fields)


class FreeCores:
    """Call it before each fit: the cores left idle by other processes since the last call
    (or since it was made), over a window of at least `MIN_WINDOW_S`."""

    def __init__(self) -> None:
        self._me = psutil.Process()
        self._mark = self._read()

    def _read(self) -> tuple[float, float, float]:
        own = self._me.cpu_times()
        return time.monotonic(), _busy_seconds(psutil.cpu_times()), own.user + own.system

    def others_busy(self) -> float:
        """Cores' worth of CPU the rest of the machine used since the last reading."""
        wall = time.monotonic() - self._mark[0]
        if wall < MIN_WINDOW_S:
            time.sleep(MIN_WINDOW_S - wall)
        now = self._read()
        (t0, busy0, own0), (t1, busy1, own1) = self._mark, now
        self._mark = now
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))

    def __call__(self) -> int:
        machine = psutil.cpu_count() or usable_cores()
        free = machine - self.others_busy()
        return max(1, min(usable_cores(), math.floor(free + 0.5)))  # 1.5 idle -> 2


class Threads(NamedTuple):
    """The threads of one fit: `n` for OpenMP loops and joblib workers, `blas` for BLAS."""

    n: int
    blas: int

    def limit(self) -> threadpool_limits:
        return threadpool_limits(limits={"openmp": self.n, "blas": self.blas})


def threads(n_threads: int | str | None, free: FreeCores) -> Threads:
    """The threads of the next fit: `baselines.n_threads` when a number, this process's cores
    when None. For "auto", the cores other processes left idle since the last fit, and one
    BLAS thread: the default models' BLAS calls (logistic regression's lbfgs, ridge) are too
    small to gain from more (lbfgs on 5k 28x28 images: 1.4 s on 1 thread, 4.2 s on 2) and
    their float sums, unlike the OpenMP and joblib ones, change with the thread count."""
    if n_threads == "auto":
        return Threads(free(), 1)
    n = usable_cores() if n_threads is None else int(n_threads)
    return Threads(n, n)
