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

import joblib
import psutil
from threadpoolctl import threadpool_limits

MIN_WINDOW_S = 0.2  # shortest interval a reading is taken over (sleeps the difference)


def _cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(psutil.cpu_count() or 1))


def usable_cores() -> int:
    """Cores this process may use: its CPUs, capped by a container's CPU quota (cgroups;
    joblib reads it) so `docker --cpus=2` on a 32-core host gives 2."""
    return max(1, min(len(_cpus()), joblib.cpu_count()))


def _busy_seconds(t) -> float:
    """CPU seconds not idle, from a `psutil.cpu_times()` entry (guest is inside user)."""
    fields = ("user", "nice", "system", "irq", "softirq", "steal")
    return sum(getattr(t, f, 0.0) for f in fields)


class FreeCores:
    """Call it before each fit: the cores left idle by other processes since the last call
    (or since it was made), over a window of at least `MIN_WINDOW_S`. Only this process's
    CPUs are read, and its own CPU time (with its finished children's) is not "other"."""

    def __init__(self) -> None:
        self._me = psutil.Process()
        self._mark = self._read()

    def _read(self) -> tuple[float, float, float]:
        per_cpu = psutil.cpu_times(percpu=True)
        busy = sum(_busy_seconds(per_cpu[c]) for c in _cpus() if c < len(per_cpu))
        own = self._me.cpu_times()
        mine = own.user + own.system + own.children_user + own.children_system
        return time.monotonic(), busy, mine

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
        cores = usable_cores()
        free = len(_cpus()) - self.others_busy()
        return max(1, min(cores, math.floor(free + 0.5)))  # 1.5 idle -> 2


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
