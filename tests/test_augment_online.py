"""augment.mode: online (#16): no copies on disk, the image transforms run on each train
batch in the training loop, seeded: two runs give identical weights on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import deep_update

from stages.augment import stage as augment
from stages.common import splits
from stages.runtime.errors import UserError
from stages.train import stage as train

PLAIN = {
    "model": {"arch": "cnn", "width": 8, "depth": 1, "dropout": 0.0},
    "train": {
        "max_epochs": 2,
        "batch_size": 128,
        "use_augmented": True,
        "threads": 1,
        "fit_on": "train",
        "ema": {"enabled": False},
        "scheduler": {"name": "none"},
    },
}


def _weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture
def digits(prepared):
    src = prepared("digits")
    return src, json.loads((src / "schema.json").read_text())


def test_online_mode_writes_no_copies_but_a_preview(make_params, digits, tmp_path):
    src, _ = digits
    metrics = augment.run(make_params({"augment": {"mode": "online"}}), src, tmp_path / "aug")
    assert metrics["rows_out"] == metrics["rows_in"] and metrics["online"] == 1
    npz, orig = splits.load(tmp_path / "aug" / "train"), splits.load(src / "train")
    np.testing.assert_array_equal(npz["X"], orig["X"])  # the rows themselves, once
    assert (tmp_path / "aug" / "samples.png").stat().st_size > 1000


def test_online_mode_is_for_images(make_params, prepared, tmp_path):
    with pytest.raises(UserError, match="augment.mode: online .* table data set"):
        augment.run(make_params({"augment": {"mode": "online"}}), prepared("iris"), tmp_path / "a")


def test_online_training_is_seeded_and_augments(make_params, digits, tmp_path):
    src, schema = digits
    aug = tmp_path / "aug"
    augment.run(make_params({"augment": {"mode": "online"}}), src, aug)

    def fit(name: str, augment_section: dict) -> dict[str, torch.Tensor]:
        cfg = make_params(deep_update(PLAIN, {"augment": augment_section}))
        paths = train.Paths.under(tmp_path / name, src, aug)
        train.run(cfg, schema, paths)
        return _weights(paths.model)

    a = fit("a", {"mode": "online"})
    b = fit("b", {"mode": "online"})
    plain = fit("plain", {"enabled": False})
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed: the same weights
    assert any(not torch.equal(a[k], plain[k]) for k in a)  # the batches were augmented
