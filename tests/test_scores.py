"""The shared metric path against the libraries and hand-checked values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from stages.common.scores import expected_calibration_error, regression


def test_regression_metrics_hand_checked():
    y, pred = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 5.0])
    # errors 0.5, 0, -1, 1: squared mean 2.25 / 4, absolute mean 2.5 / 4, SST 5
    got = regression(y, pred)
    assert got["rmse"] == pytest.approx(np.sqrt(2.25 / 4))
    assert got["mae"] == pytest.approx(0.625)
    assert got["r2"] == pytest.approx(1 - 2.25 / 5)
    assert regression(np.ones(3), np.array([1.0, 2.0, 3.0]))["r2"] is None  # undefined


@pytest.mark.parametrize("k", [2, 10])
def test_calibration_error_equals_torchmetrics(k):
    rng = np.random.default_rng(k)
    logits = rng.normal(scale=2.0, size=(500, k))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.where(rng.random(500) < 0.7, proba.argmax(axis=1), rng.integers(0, k, 500))
    want = multiclass_calibration_error(
        torch.from_numpy(proba), torch.from_numpy(y), num_classes=k, n_bins=15, norm="l1"
    )
    assert expected_calibration_error(y, proba, 15) == pytest.approx(float(want), abs=1e-6)


def test_compress_val_metric_hand_checked():
    from stages.compress.measure import val_metric

    logits = np.array([[2.0, 0.1, 0.0], [0.0, 3.0, 1.0], [0.2, 0.1, 0.0], [0.0, 0.0, 1.0]])
    assert val_metric("multiclass", logits, np.array([0, 1, 2, 2])) == pytest.approx(0.75)
    one_logit = np.array([[1.5], [-0.2], [0.3], [-2.0]])  # > 0 is class 1
    assert val_metric("binary", one_logit, np.array([1, 0, 0, 0])) == pytest.approx(0.75)
    values = np.array([[1.5], [2.0], [2.0], [5.0]])
    want = np.sqrt(2.25 / 4)  # the hand-checked errors of the regression test above
    assert val_metric("regression", values, np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(want)
