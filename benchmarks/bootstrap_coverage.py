"""The evaluate stage's bootstrap against scipy.stats.bootstrap (percentile and BCa).

Coverage: on simulated test sets with a known population value (accuracy 0.8 of a 3-class
classifier; R^2 0.5 of y ~ N(0, 1), pred = y + N(0, 0.5)), the share of 95% intervals that
contain it, over `--trials` test sets, with the milliseconds per interval. Scaling: seconds
per interval as the test set grows (BCa's jackknife is n evaluations on n - 1 rows).

    python benchmarks/bootstrap_coverage.py [--trials 200]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages.evaluate import bootstrap  # noqa: E402


def accuracy(y, p, axis=-1):
    return (y == p).mean(axis=axis)


def r2(y, p, axis=-1):
    sse = ((p - y) ** 2).sum(axis=axis)
    return 1 - sse / ((y - y.mean(axis=axis, keepdims=True)) ** 2).sum(axis=axis)


def simulate(metric: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if metric == "accuracy":
        y = rng.integers(0, 3, n)
        return y, np.where(rng.random(n) < 0.8, y, (y + 1) % 3)
    y = rng.normal(size=n)
    return y, y + rng.normal(scale=np.sqrt(0.5), size=n)


def scipy_interval(metric, y, pred, method, seed, n_resamples=1000):
    fn = accuracy if metric == "accuracy" else r2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning on constant resamples
        res = stats.bootstrap(
            (y, pred), fn, paired=True, vectorized=True, n_resamples=n_resamples,
            method=method, random_state=np.random.default_rng(seed),
            batch=max(1, bootstrap.CHUNK_CELLS // len(y)),
        )  # fmt: skip
    return res.confidence_interval.low, res.confidence_interval.high


def timed_intervals(metric, y, pred, seed) -> list[tuple[float, float, float]]:
    """(low, high, seconds) of ours, scipy percentile and scipy BCa, in that order."""
    out = []
    for method in ("ours", "percentile", "BCa"):
        start = time.perf_counter()
        if method == "ours":
            low, high = bootstrap.confidence_interval(metric, y, pred, 1000, seed=seed)
        else:
            low, high = scipy_interval(metric, y, pred, method, seed)
        out.append((low, high, time.perf_counter() - start))
    return out


def coverage(trials: int) -> None:
    rng = np.random.default_rng(12345)
    print("| metric | n | ours (percentile) | scipy percentile | scipy BCa | ms per CI |")
    print("|---|---:|---:|---:|---:|---|")
    for metric, n in (("accuracy", 60), ("accuracy", 300), ("r2", 60), ("r2", 300)):
        truth = 0.8 if metric == "accuracy" else 0.5
        hits, spent = np.zeros(3), np.zeros(3)
        for trial in range(trials):
            y, pred = simulate(metric, n, rng)
            for i, (low, high, seconds) in enumerate(timed_intervals(metric, y, pred, trial)):
                hits[i] += low <= truth <= high
                spent[i] += seconds
        cov = " | ".join(f"{h / trials:.3f}" for h in hits)
        ms = " / ".join(f"{1000 * s / trials:.1f}" for s in spent)
        print(f"| {metric} | {n} | {cov} | {ms} |")


def scaling() -> None:
    rng = np.random.default_rng(0)
    print("\n| n | ours s | scipy percentile s | scipy BCa s |")
    print("|---:|---:|---:|---:|")
    for n in (2_000, 10_000):
        y, pred = simulate("accuracy", n, rng)
        row = [seconds for _, _, seconds in timed_intervals("accuracy", y, pred, 1)]
        print(f"| {n} | " + " | ".join(f"{s:.3f}" for s in row) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    args = ap.parse_args()
    coverage(args.trials)
    scaling()


if __name__ == "__main__":
    main()
