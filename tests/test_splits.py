"""Split storage (stages.common.splits): the same rows as the `.npz` splits it replaced,
pixels kept uint8 on disk, readers that index like arrays, and training that gives the same
model whether the rows are held in memory or streamed from disk."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from stages.common import splits
from stages.common.preprocess import apply_arrays
from stages.prepare import stage as prepare
from stages.prepare import tabular
from stages.prepare.sources import table_scan

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


def _whole_file_splits(path, cfg, planned, target):
    """Today's .npz path, from a whole-file read: fit on the train rows, transform each."""
    frame = pd.read_csv(path)
    frame = frame.loc[frame[target].notna()].drop(columns=target).reset_index(drop=True)
    fitted, _ = tabular.fit_table(frame.iloc[planned.parts["train"]], cfg.data)
    return {s: tabular.transform(fitted, frame.iloc[planned.parts[s]]) for s in prepare.SPLITS}


def test_a_table_streamed_in_chunks_equals_the_whole_file_transform(
    make_params, tmp_path, monkeypatch
):
    make_houses(tmp_path / "houses.csv", n=300)
    cfg = make_params({"data": {"source": "houses.csv", "target": "price"}})
    monkeypatch.setattr(table_scan, "CHUNK_ROWS", 37)  # many chunks, the last one short
    planned = prepare.plan(cfg, tmp_path)
    prepare.run(cfg, tmp_path / "out", root=tmp_path, planned=planned)
    whole = _whole_file_splits(tmp_path / "houses.csv", cfg, planned, "price")
    for split in prepare.SPLITS:
        new = splits.load(tmp_path / "out" / split)
        np.testing.assert_allclose(new["X"], whole[split], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(new["y"], planned.target.y[planned.parts[split]])


def test_chunks_that_read_a_column_as_other_types_are_read_again_as_the_whole_file(
    make_params, tmp_path, monkeypatch
):
    """Chunk 1 reads `n` as integers and `code` as numbers; later chunks find a blank and a
    word. A whole-file read makes them float and text; so must the streamed one."""
    rows = [f"{i % 7},{i % 5},{i % 2}" for i in range(120)]
    rows[80] = ",x,1"  # a blank in `n`, a word in `code`, both after the first chunk
    (tmp_path / "t.csv").write_text("n,code,y\n" + "\n".join(rows) + "\n")
    cfg = make_params({"data": {"source": "t.csv", "target": "y"}})
    monkeypatch.setattr(table_scan, "CHUNK_ROWS", 50)
    planned = prepare.plan(cfg, tmp_path)
    assert planned.raw.X.dtypes == {"n": "float64", "code": "str"}
    prepare.run(cfg, tmp_path / "out", root=tmp_path, planned=planned)
    schema = json.loads((tmp_path / "out" / "schema.json").read_text())
    assert schema["preprocessing"]["column_types"] == {"n": "double", "code": "string"}
    assert set(schema["preprocessing"]["categorical"]["code"]) == {"0", "1", "2", "3", "4", "x"}
    whole = _whole_file_splits(tmp_path / "t.csv", cfg, planned, "y")
    for split in prepare.SPLITS:
        np.testing.assert_allclose(splits.load(tmp_path / "out" / split)["X"], whole[split])


def test_a_table_over_sample_rows_fits_on_a_seeded_sample_and_writes_every_row(
    make_params, tmp_path, monkeypatch
):
    make_houses(tmp_path / "houses.csv", n=3000)
    cfg = make_params({"data": {"source": "houses.csv", "target": "price", "sample_rows": 500}})
    monkeypatch.setattr(table_scan, "CHUNK_ROWS", 256)
    planned = prepare.plan(cfg, tmp_path)
    sampled = planned.raw.X.sample_rows
    assert len(sampled) == 500 and np.all(np.diff(sampled) > 0)  # in file order
    monkeypatch.setattr(table_scan, "CHUNK_ROWS", 999)  # the same sample, however chunked
    np.testing.assert_array_equal(prepare.plan(cfg, tmp_path).raw.X.sample_rows, sampled)
    metrics = prepare.run(cfg, tmp_path / "out", root=tmp_path, planned=planned)
    assert sum(metrics[f"rows_{s}"] for s in prepare.SPLITS) == 3000
    schema = json.loads((tmp_path / "out" / "schema.json").read_text())
    prep = schema["preprocessing"]
    in_train = np.isin(sampled, planned.parts["train"]).sum()
    assert prep["fit_rows"] == in_train < len(planned.parts["train"])
    source = pd.read_csv(tmp_path / "houses.csv")
    area = source["area"]
    assert abs(prep["numeric"]["area"]["mean"] - area.mean()) < 0.1 * area.std()
    features = source.drop(columns="price")
    example = pd.DataFrame(prep["example"]["data"], columns=prep["example"]["columns"])
    first = features.iloc[planned.parts["train"][:3]].reset_index(drop=True)
    pd.testing.assert_frame_equal(example, first, check_dtype=False)  # the served example
    outside = np.setdiff1d(np.arange(3000), sampled)[[5, 0, 900]]  # rows read back from disk
    pd.testing.assert_frame_equal(
        planned.raw.X.take(outside), features.iloc[outside].reset_index(drop=True)
    )
    train = splits.load(tmp_path / "out" / "train")
    assert len(train["X"]) == len(planned.parts["train"]) and np.isfinite(train["X"]).all()


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
