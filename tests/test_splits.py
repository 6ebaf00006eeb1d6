"""Split storage (stages.common.splits): the same rows as the `.npz` splits it replaced,
pixels kept uint8 on disk, readers that index like arrays, and training that gives the same
model whether the rows are held in memory or streamed from disk."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.common import splits
from stages.common.preprocess import apply_arrays
from stages.prepare import stage as prepare
from stages.prepare import tabular

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from make_examples import make_houses, make_shapes  # noqa: E402


def test_an_image_folder_keeps_uint8_pixels_and_loads_as_the_old_float32_rows(
    make_params, tmp_path
):
    make_shapes(tmp_path / "imgs", per_class=6)
    cfg = make_params({"data": {"source": "imgs"}})
    planned = prepare.plan(cfg, tmp_path)
    prepare.run(cfg, tmp_path / "out", root=tmp_path, planned=planned)
    prep = json.loads((tmp_path / "out" / "schema.json").read_text())["preprocessing"]
    for split in prepare.SPLITS:
        rows = planned.parts[split]
        stored = splits.open_split(tmp_path / "out" / split)
        assert stored["X"].dtype == np.uint8  # a quarter of float32 on disk
        old = apply_arrays(planned.raw.X[rows], prep)  # what {split}.npz held: float32
        new = splits.load(tmp_path / "out" / split)
        np.testing.assert_array_equal(new["X"], old)  # same rows, same order, same values
        np.testing.assert_array_equal(new["y"], planned.target.y[rows])


def test_a_table_written_in_chunks_equals_the_whole_transform(make_params, tmp_path, monkeypatch):
    make_houses(tmp_path / "houses.csv", n=300)
    cfg = make_params({"data": {"source": "houses.csv", "target": "price"}})
    monkeypatch.setattr(prepare, "TABLE_CHUNK", 37)  # many chunks, the last one short
    planned = prepare.plan(cfg, tmp_path)
    prepare.run(cfg, tmp_path / "out", root=tmp_path, planned=planned)
    fitted, _ = tabular.fit_table(planned.raw.X.iloc[planned.parts["train"]], cfg.data)
    for split in prepare.SPLITS:
        rows = planned.parts[split]
        whole = tabular.transform(fitted, planned.raw.X.iloc[rows])  # the .npz's one call
        new = splits.load(tmp_path / "out" / split)
        np.testing.assert_allclose(new["X"], whole, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(new["y"], planned.target.y[rows])


def test_rows_index_like_an_array_and_a_short_split_is_refused(tmp_path):
    X = np.random.default_rng(0).integers(0, 256, (500, 3, 4, 4), dtype=np.uint8)
    y = np.arange(500)
    splits.write(tmp_path / "s", x_scale=1 / 255, X=X, y=y)
    rows = splits.open_split(tmp_path / "s")["X"]
    idx = np.random.default_rng(1).integers(-500, 500, 200)  # any order, repeats, negatives
    np.testing.assert_array_equal(rows[idx], X[idx])
    np.testing.assert_array_equal(rows[10:20], X[10:20])
    np.testing.assert_array_equal(rows[::7], X[::7])
    np.testing.assert_array_equal(rows[-1], X[-1])
    both = splits.Stacked([rows, rows])
    np.testing.assert_array_equal(both[np.array([0, 999, 500])], X[[0, 499, 0]])
    short = splits.Writer(tmp_path / "t", 10, {"X": ((2,), np.float32)})
    short.write(X=np.zeros((9, 2), np.float32))
    with pytest.raises(ValueError, match="rows written"):
        short.close()
    assert not splits.exists(tmp_path / "t")  # no split.json: readers refuse it by name


def _train(make_params, tmp_path, src, in_memory: bool, name: str):
    from stages.train import stage as train

    schema = json.loads((src / "schema.json").read_text())
    cfg = make_params(
        {
            "model": {"arch": "cnn", "width": 4, "depth": 1},
            "train": {
                "max_epochs": 2,
                "use_augmented": False,
                "threads": 1,
                "batch_size": 32,
                "in_memory": in_memory,
                "fit_on": "train",
            },
        }
    )
    paths = train.Paths.under(tmp_path / name, src)
    metrics = train.run(cfg, schema, paths)
    return metrics, torch.load(paths.model, weights_only=True)["state_dict"]


def test_streamed_and_in_memory_training_give_the_same_model(make_params, tmp_path):
    """uint8 images: the same permutation and float32 scaling per batch in both paths."""
    make_shapes(tmp_path / "imgs", per_class=12)
    prepare.run(make_params({"data": {"source": "imgs"}}), tmp_path / "p", root=tmp_path)
    held, w_held = _train(make_params, tmp_path, tmp_path / "p", True, "held")
    streamed, w_streamed = _train(make_params, tmp_path, tmp_path / "p", False, "streamed")
    assert w_held.keys() == w_streamed.keys()
    for key in w_held:
        torch.testing.assert_close(w_held[key], w_streamed[key], rtol=0, atol=0)
    assert held[held["monitor"]] == streamed[streamed["monitor"]]
