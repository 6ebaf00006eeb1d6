"""prepare: every source kind, the split contract, and bad data refused with a named culprit."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages.common import splits
from stages.prepare import stage as prepare
from stages.runtime.errors import DataError, UserError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from make_examples import make_houses, make_shapes  # noqa: E402


def _prepare(make_params, tmp_path, data: dict) -> tuple[dict, Path]:
    cfg = make_params({"data": data})
    out = tmp_path / "prepared"
    prepare.run(cfg, out, root=tmp_path)
    return json.loads((out / "schema.json").read_text()), out


def _load(out: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = splits.load(out / split)
    return arrays["X"], arrays["y"]


@pytest.mark.parametrize(
    ("source", "task", "shape"),
    [
        ("digits", "classification", [1, 8, 8]),
        ("iris", "classification", [4]),
        ("wine", "classification", [13]),
        ("breast_cancer", "classification", [30]),
        ("diabetes", "regression", [10]),
    ],
)
def test_builtins(make_params, tmp_path, source, task, shape):
    schema, out = _prepare(make_params, tmp_path, {"source": source})
    assert schema["task"] == task and schema["input_shape"] == shape
    X, y = _load(out, "train")
    assert X.dtype == np.float32 and X.shape[1:] == tuple(shape)
    assert y.dtype == (np.int64 if task == "classification" else np.float32)


def test_splits_are_disjoint_stratified_and_seeded(make_params, tmp_path):
    cfg = make_params({"data": {"source": "digits"}})
    p1, p2 = prepare.plan(cfg), prepare.plan(cfg)
    parts = p1.parts
    all_idx = np.concatenate([parts["train"], parts["val"], parts["test"]])
    assert len(all_idx) == len(np.unique(all_idx)) == len(p1.target.y)
    for split in parts:
        np.testing.assert_array_equal(parts[split], p2.parts[split])
    overall = np.bincount(p1.target.y) / len(p1.target.y)
    test_frac = np.bincount(p1.target.y[parts["test"]]) / len(parts["test"])
    assert np.abs(overall - test_frac).max() < 0.02
    other = prepare.plan(make_params({"seed": 7, "data": {"source": "digits"}}))
    assert not np.array_equal(parts["test"], other.parts["test"])


def test_digits_scaled_to_unit_range(make_params, tmp_path):
    _, out = _prepare(make_params, tmp_path, {"source": "digits"})
    X, _ = _load(out, "train")
    assert X.min() == 0.0 and X.max() == 1.0


def test_synthetic_sizes_from_params(make_params, tmp_path):
    data = {
        "source": "synthetic",
        "synthetic": {"n_samples": 500, "n_features": 7, "n_informative": 3, "n_classes": 4},
    }
    schema, out = _prepare(make_params, tmp_path, data)
    assert schema["n_classes"] == 4 and schema["input_shape"] == [7]
    assert sum(schema["rows"].values()) == 500
    reg, _ = _prepare(make_params, tmp_path, {**data, "task": "regression"})
    assert reg["task"] == "regression"


def test_csv_with_categoricals_and_missing_values(make_params, tmp_path):
    make_houses(tmp_path / "houses.csv", n=300)
    schema, out = _prepare(make_params, tmp_path, {"source": "houses.csv", "target": "price"})
    assert schema["task"] == "regression"
    prep = schema["preprocessing"]
    assert set(prep["categorical"]) == {"neighborhood", "condition", "sold_fast"}
    assert "neighborhood_centre" in schema["feature_names"]
    X, _ = _load(out, "train")
    assert np.isfinite(X).all()
    numeric = np.asarray(prep["numeric_mask"])
    assert np.allclose(X[:, numeric].mean(axis=0), 0, atol=1e-5)  # scaled on train only
    Xt, _ = _load(out, "test")
    assert not np.allclose(Xt[:, numeric].mean(axis=0), 0, atol=1e-5)
    assert (out / "preprocessor.skops").exists()


def test_csv_classification_auto_and_all_missing_column_dropped(make_params, tmp_path, caplog):
    frame = make_houses(tmp_path / "h.csv", n=200)
    frame["empty"] = np.nan
    frame.to_csv(tmp_path / "h.csv", index=False)
    schema, _ = _prepare(make_params, tmp_path, {"source": "h.csv", "target": "sold_fast"})
    assert schema["task"] == "classification" and schema["classes"] == ["no", "yes"]
    assert "empty" not in schema["preprocessing"]["columns"]
    assert any("no values at all" in n and "empty" in n for n in schema["notes"])


def test_parquet(make_params, tmp_path):
    frame = make_houses(tmp_path / "h.csv", n=200)
    frame.to_parquet(tmp_path / "h.parquet")
    schema, _ = _prepare(make_params, tmp_path, {"source": "h.parquet", "target": "sold_fast"})
    assert schema["n_classes"] == 2


def test_non_utf8_csv_is_decoded(make_params, tmp_path):
    text = "city,score,label\n" + "".join(
        f"{c},{i},{'a' if i % 2 else 'b'}\n" for i, c in enumerate(["Zürich", "Málaga"] * 20)
    )
    (tmp_path / "latin.csv").write_bytes(text.encode("cp1252"))
    schema, _ = _prepare(make_params, tmp_path, {"source": "latin.csv", "target": "label"})
    assert "Zürich" in schema["preprocessing"]["categorical"]["city"]
    assert any("cp1252" in n for n in schema["notes"])


def test_image_folder_mixed_modes_and_sizes(make_params, tmp_path):
    make_shapes(tmp_path / "shapes", per_class=12, sizes=(20, 28), modes=("L", "RGB"))
    schema, out = _prepare(make_params, tmp_path, {"source": "shapes", "image_size": [16, 12]})
    assert schema["input_shape"] == [3, 16, 12]
    assert schema["classes"] == ["circle", "square", "triangle"]
    X, _ = _load(out, "train")
    assert X.min() >= 0.0 and X.max() <= 1.0


def test_npz_sequences(make_params, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "seq.npz", X=rng.normal(5, 2, (90, 12, 3)), y=np.repeat([0, 1, 2], 30))
    schema, out = _prepare(make_params, tmp_path, {"source": "seq.npz"})
    assert schema["modality"] == "sequence" and schema["input_shape"] == [12, 3]
    X, _ = _load(out, "train")
    assert abs(float(X.mean())) < 0.1


def _write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return name


def _refused(make_params, tmp_path, data: dict, *fragments: str) -> None:
    cfg = make_params({"data": data})
    with pytest.raises(UserError) as err:
        prepare.run(cfg, tmp_path / "prepared", root=tmp_path)
    for fragment in fragments:
        assert fragment in str(err.value)
    assert not (tmp_path / "prepared").exists()
    assert not list(tmp_path.glob(".prepared.tmp-*"))


def test_empty_csv(make_params, tmp_path):
    _refused(
        make_params,
        tmp_path,
        {"source": _write(tmp_path, "e.csv", ""), "target": "y"},
        "e.csv",
        "empty",
    )


def test_header_only_csv(make_params, tmp_path):
    _refused(
        make_params,
        tmp_path,
        {"source": _write(tmp_path, "h.csv", "a,b,y\n"), "target": "y"},
        "h.csv",
        "no data rows",
    )


def test_csv_without_target_column(make_params, tmp_path):
    make_houses(tmp_path / "h.csv", n=50)
    _refused(
        make_params,
        tmp_path,
        {"source": "h.csv", "target": "prize"},
        "'prize' is not a column",
        "did you mean 'price'",
    )


def test_csv_target_all_missing(make_params, tmp_path):
    name = _write(tmp_path, "n.csv", "a,y\n" + "1,\n" * 20)
    _refused(make_params, tmp_path, {"source": name, "target": "y"}, "n.csv", "'y' is empty")


def test_truncated_csv(make_params, tmp_path):
    name = _write(tmp_path, "t.csv", "a,b,c,y\n" + "1,2,3,x\n" * 30 + "1,2")
    _refused(make_params, tmp_path, {"source": name, "target": "y"}, "t.csv", "truncated")


def test_csv_infinite_value_names_row_and_column(make_params, tmp_path):
    name = _write(tmp_path, "i.csv", "a,y\n" + "1,p\n2,q\n" * 10 + "inf,p\n")
    _refused(make_params, tmp_path, {"source": name, "target": "y"}, "column 'a'", "line 22")


def test_free_text_target(make_params, tmp_path):
    rows = "".join(f"{i},comment number {i}\n" for i in range(300))
    name = _write(tmp_path, "f.csv", "a,text\n" + rows)
    _refused(
        make_params,
        tmp_path,
        {"source": name, "target": "text"},
        "300 distinct values",
        "free text",
    )


def test_one_class(make_params, tmp_path):
    name = _write(tmp_path, "o.csv", "a,y\n" + "1,same\n" * 30)
    _refused(make_params, tmp_path, {"source": name, "target": "y"}, "only one class", "'same'")


def test_class_too_small_for_split(make_params, tmp_path):
    name = _write(tmp_path, "s.csv", "a,y\n" + "1,big\n" * 40 + "2,rare\n2,rare\n")
    _refused(make_params, tmp_path, {"source": name, "target": "y"}, "class 'rare' has 2 row(s)")


def test_size_limit(make_params, tmp_path):
    make_houses(tmp_path / "h.csv", n=100)
    _refused(
        make_params,
        tmp_path,
        {"source": "h.csv", "target": "price", "max_bytes": 100},
        "exceeds data.max_bytes = 100",
    )


def test_image_folder_without_class_folders(make_params, tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "imgs" / "a.png")
    _refused(make_params, tmp_path, {"source": "imgs"}, "no class folders")


def test_image_folder_with_corrupt_file(make_params, tmp_path):
    make_shapes(tmp_path / "shapes", per_class=5)
    bad = tmp_path / "shapes" / "square" / "square_002.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    _refused(make_params, tmp_path, {"source": "shapes"}, "square_002.png")


def test_image_folder_bad_files_skipped_and_counted(make_params, tmp_path, caplog):
    make_shapes(tmp_path / "shapes", per_class=12)
    truncated = tmp_path / "shapes" / "square" / "square_002.png"
    truncated.write_bytes(truncated.read_bytes()[:60])  # header fine, pixels cut: decode fails
    (tmp_path / "shapes" / "circle" / "circle_001.png").write_bytes(b"not a png")  # header
    cfg = make_params({"data": {"source": "shapes", "on_bad_image": "skip"}})
    with caplog.at_level("WARNING", logger="reprolab.sources"):
        metrics = prepare.run(cfg, tmp_path / "prepared", root=tmp_path)
    total = len(list((tmp_path / "shapes").rglob("*.png")))
    assert metrics["images_skipped"] == 2
    assert sum(metrics[f"rows_{s}"] for s in ("train", "val", "test")) == total - 2
    [warning] = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert "skipped 2 unreadable image(s)" in warning and ".png" in warning
    # the default still refuses, naming the first bad file, before anything is written
    with pytest.raises(UserError, match="circle_001.png"):
        prepare.run(make_params({"data": {"source": "shapes"}}), tmp_path / "p2", root=tmp_path)
    assert not (tmp_path / "p2").exists()


@pytest.mark.parametrize(
    ("arrays", "fragment"),
    [
        ({"X": np.zeros((10, 2))}, "missing array 'y'"),
        ({"X": np.zeros((10, 2)), "y": np.zeros(9)}, "X has 10 rows but y has 9"),
        ({"X": np.full((30, 2), np.nan), "y": np.arange(30) % 3}, "row 0 has a non-finite"),
        ({"X": np.r_[np.zeros((29, 2)), [[np.inf, 0]]], "y": np.arange(30) % 3}, "row 29"),
        (
            {"X": np.zeros((30, 2)), "y": np.arange(30) % 4, "classes": np.array(["a", "b", "c"])},
            "outside 0..2",
        ),
    ],
)
def test_bad_npz(make_params, tmp_path, arrays, fragment):
    np.savez(tmp_path / "bad.npz", **arrays)
    _refused(make_params, tmp_path, {"source": "bad.npz"}, "bad.npz", fragment)


def test_data_errors_are_user_errors():
    assert issubclass(DataError, UserError)


def test_failed_rerun_keeps_previous_output(make_params, tmp_path):
    _, out = _prepare(make_params, tmp_path, {"source": "iris"})
    before = (out / "train" / "X.npy").read_bytes()
    name = _write(tmp_path, "e.csv", "")
    with pytest.raises(UserError):
        prepare.run(make_params({"data": {"source": name, "target": "y"}}), out, root=tmp_path)
    assert (out / "train" / "X.npy").read_bytes() == before
    pd.testing.assert_index_equal(
        pd.Index(sorted(p.name for p in out.iterdir())),
        pd.Index(["schema.json", "test", "train", "val", "preprocessor.skops"]).sort_values(),
    )


def _ambiguous_csv(path: Path, n: int = 240) -> None:
    """An ID, numbers with a few words, dates, a real category, missing targets, a column
    that is ints until a blank late in the file."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "row_id": np.arange(n) + 1000,
            "user": [f"u{i:05d}" for i in rng.permutation(n)],
            "price": [f"{x:.2f}" if i % 37 else "unknown" for i, x in enumerate(rng.random(n))],
            "when": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "color": rng.choice(["red", "green", "blue"], n),
            "count": rng.integers(0, 9, n).astype(object),
            "y": rng.choice(["p", "q", "r"], n).astype(object),
        }
    )
    frame.loc[[5, 150, 151], "y"] = None
    kept = frame["y"].notna()
    frame.loc[kept, "row_id"] = np.arange(kept.sum()) + 1000  # consecutive once they go
    frame.loc[200, "count"] = None
    frame.to_csv(path, index=False)


def test_a_table_reviewed_a_chunk_at_a_time_is_judged_as_the_whole_file(
    make_params, tmp_path, monkeypatch
):
    from stages.prepare.sources import table_scan

    _ambiguous_csv(tmp_path / "a.csv")
    cfg = make_params({"data": {"source": "a.csv", "target": "y"}})
    whole = prepare.plan(cfg, tmp_path)
    monkeypatch.setattr(table_scan, "CHUNK_ROWS", 17)
    chunked = prepare.plan(cfg, tmp_path)
    assert chunked.raw.notes == whole.raw.notes
    said = "\n".join(whole.raw.notes)
    for fragment in (
        "column 'row_id': consecutive distinct integers",
        "column 'user': every value is distinct",
        "column 'price': 97% numbers and 7 text value(s) (e.g. 'unknown')",
        "column 'when': looks like dates",
        "dropped 3 row(s) with a missing target (file lines [7, 152, 153]",
    ):
        assert fragment in said
    assert "'color'" not in said
    assert chunked.raw.X.decisions == whole.raw.X.decisions
    # some chunks read `price` as numbers and `count` as ints: read again as one type each
    assert chunked.raw.X.dtypes == {"price": "str", "count": "float64"}
    np.testing.assert_array_equal(chunked.target.y, whole.target.y)
    for name, planned in (("whole", whole), ("chunked", chunked)):
        prepare.run(cfg, tmp_path / name, root=tmp_path, planned=planned)
    for split in prepare.SPLITS:
        a, b = splits.load(tmp_path / "whole" / split), splits.load(tmp_path / "chunked" / split)
        np.testing.assert_array_equal(a["X"], b["X"])


def test_an_infinite_value_late_in_a_table_is_refused_by_its_file_line(
    make_params, tmp_path, monkeypatch
):
    from stages.prepare.sources import table_scan

    rows = ["1,p", ",q", "2,"] * 30 + ["inf,p"]  # blank targets drop rows, not file lines
    name = _write(tmp_path, "i.csv", "a,y\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr(table_scan, "CHUNK_ROWS", 8)
    _refused(make_params, tmp_path, {"source": name, "target": "y"}, "column 'a'", "line 92")
    words = _write(tmp_path, "w.csv", "a,y\n" + "\n".join(["x,p", "1,q"] * 20 + ["-inf,p"]))
    cfg = {"source": words, "target": "y", "columns": {"a": "numeric"}}  # read as numbers
    _refused(make_params, tmp_path, cfg, "column 'a'", "line 42")


def test_a_table_edited_between_the_two_reads_is_refused_by_name(make_params, tmp_path):
    make_houses(tmp_path / "h.csv", n=200)
    cfg = make_params({"data": {"source": "h.csv", "target": "price"}})
    planned = prepare.plan(cfg, tmp_path)
    for edit in ("grown", "shrunk"):
        lines = (tmp_path / "h.csv").read_text().splitlines(keepends=True)
        lines = lines + lines[1:40] if edit == "grown" else lines[:150]
        (tmp_path / "h.csv").write_text("".join(lines))
        with pytest.raises(DataError, match="h.csv: changed while prepare read it"):
            prepare.run(cfg, tmp_path / "out", root=tmp_path, planned=planned)
        assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"dataset": "d", "task": "classification"}', "no fingerprint, modality, input_shape"),
        ("{not json", "not JSON"),
        ("[1, 2]", "holds a list"),
    ],
)
def test_a_schema_not_written_by_prepare_is_refused_by_name(tmp_path, text, says):
    from stages.common.io import read_schema

    (tmp_path / "schema.json").write_text(text)
    with pytest.raises(UserError, match=re.escape(says)) as err:
        read_schema(tmp_path)
    assert str(tmp_path / "schema.json") in str(err.value)
