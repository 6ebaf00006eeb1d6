"""bootstrap: vectorized resamples equal the naive loop, CIs cover the truth, pairs cancel."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, mean_absolute_error, r2_score

from stages.evaluate import bootstrap, leaderboard


def _naive(metric, y, pred, idx):
    yt, yp = y[idx], pred[idx]
    if metric == "accuracy":
        return (yt == yp).mean()
    if metric == "macro_f1":
        return f1_score(yt, yp, labels=np.unique(yt), average="macro", zero_division=0)
    if metric == "rmse":
        return np.sqrt(((yp - yt) ** 2).mean())
    if metric == "mae":
        return mean_absolute_error(yt, yp)
    return r2_score(yt, yp)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "rmse", "mae", "r2"])
def test_weighted_resamples_match_indexing(metric):
    rng = np.random.default_rng(0)
    n = 60
    if metric in ("accuracy", "macro_f1"):
        y = rng.integers(0, 4, n)
        pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, 4, n))
    else:
        y = rng.normal(size=n)
        pred = y + rng.normal(scale=0.5, size=n)
    idx = rng.integers(0, n, size=(5, n))
    W = np.stack([np.bincount(row, minlength=n) for row in idx]).astype(float)
    got = bootstrap.weighted_metric(metric, W, y, pred, 4 if metric == "macro_f1" else None)
    want = [_naive(metric, y, pred, row) for row in idx]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_chunks_cover_all_resamples_and_are_seeded(monkeypatch):
    monkeypatch.setattr(bootstrap, "CHUNK_CELLS", 1000)  # force several chunks
    chunks = list(bootstrap.resample_weights(300, 25, seed=3))
    assert sum(len(c) for c in chunks) == 25 and len(chunks) > 1
    assert all((c.sum(axis=1) == 300).all() for c in chunks)
    again = np.concatenate(list(bootstrap.resample_weights(300, 25, seed=3)))
    np.testing.assert_array_equal(np.concatenate(chunks), again)


def test_confidence_interval_covers_true_accuracy():
    """200 test sets from a classifier with known accuracy 0.8: ~95% of CIs contain 0.8."""
    rng = np.random.default_rng(12345)
    true_acc, n, trials = 0.8, 300, 200
    hits = 0
    for trial in range(trials):
        y = rng.integers(0, 3, n)
        pred = np.where(rng.random(n) < true_acc, y, (y + 1) % 3)
        low, high = bootstrap.confidence_interval("accuracy", y, pred, 1000, seed=trial)
        hits += low <= true_acc <= high
    coverage = hits / trials
    # binomial s.e. of the coverage estimate is ~0.015; percentile intervals run slightly short
    assert 0.89 <= coverage <= 0.99, coverage


def test_interval_narrows_with_more_data():
    rng = np.random.default_rng(1)
    widths = []
    for n in (100, 2500):
        y = rng.integers(0, 2, n)
        pred = np.where(rng.random(n) < 0.9, y, 1 - y)
        low, high = bootstrap.confidence_interval("accuracy", y, pred, 1000, seed=0)
        widths.append(high - low)
    assert widths[1] < widths[0] / 3


def test_paired_difference_identical_and_clearly_better():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    good = np.where(rng.random(400) < 0.95, y, 1 - y)
    bad = np.where(rng.random(400) < 0.70, y, 1 - y)
    assert bootstrap.paired_difference("accuracy", y, good, good, 500, 0) == (0.0, 0.0, 0.0)
    diff, low, high = bootstrap.paired_difference("accuracy", y, good, bad, 500, 0)
    assert low > 0.15 and diff == pytest.approx((good == y).mean() - (bad == y).mean())
    [cmp] = leaderboard.compare("good", ["bad"], y, {"good": good, "bad": bad}, "accuracy",
                                500, 0, 0.95, 2)  # fmt: skip
    assert cmp["distinguishable"] and cmp["text"].startswith("good is better than bad by ")
    assert " pts [" in cmp["text"]


def test_lower_is_better_metrics_are_oriented():
    rng = np.random.default_rng(4)
    y = rng.normal(size=300)
    close, far = y + rng.normal(scale=0.1, size=300), y + rng.normal(scale=1.0, size=300)
    [cmp] = leaderboard.compare("close", ["far"], y, {"close": close, "far": far}, "rmse",
                                500, 0, 0.95, None)  # fmt: skip
    assert cmp["difference"] > 0 and cmp["ci_low"] > 0 and "better than far" in cmp["text"]
    same = leaderboard.describe("a", "b", 0.001, -0.01, 0.012, "accuracy")
    assert same == "a is not distinguishable from b (difference 0.1 pts [-1.0, 1.2])"
