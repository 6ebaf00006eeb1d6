"""Bad input through the real `python -m stages.prepare` CLI.

Each refused case must exit 2 before any compute, print one paragraph naming the file,
key or row (no traceback), and leave no output and no MLflow run. Accepted cases (which
must work by conversion) are checked for their output.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples"))
from make_examples import make_houses, make_shapes  # noqa: E402

from tests.conftest import run_stage  # noqa: E402


@dataclass
class Case:
    name: str
    make: object  # (tmp_path) -> data overrides (dict) or raw params text (str)
    expect: tuple[str, ...]  # fragments of the error; empty = must succeed


def _params_text(text):
    return lambda tmp: text


def _csv(text, target="y", **extra):
    def make(tmp):
        (tmp / "d.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
        return {"source": "d.csv", "target": target, **extra}

    return make


def _npz(**arrays):
    def make(tmp):
        np.savez(tmp / "d.npz", **arrays)
        return {"source": "d.npz"}

    return make


def _truncated_png(tmp):
    make_shapes(tmp / "imgs", per_class=4)
    bad = tmp / "imgs" / "circle" / "circle_001.png"
    bad.write_bytes(bad.read_bytes()[:50])
    return {"source": "imgs"}


def _mixed_images(tmp):
    make_shapes(tmp / "imgs", per_class=6, sizes=(12, 30), modes=("L", "RGB"))
    Image.new("P", (17, 9)).save(tmp / "imgs" / "circle" / "palette.png")
    Image.new("RGBA", (9, 9)).save(tmp / "imgs" / "square" / "alpha.png")
    return {"source": "imgs", "image_size": [10, 10]}


def _free_text(tmp):
    rows = "".join(f"{i},note {i} about something\n" for i in range(10_000))
    (tmp / "d.csv").write_text("a,text\n" + rows)
    return {"source": "d.csv", "target": "text"}


def _too_big(tmp):
    make_houses(tmp / "d.csv", n=200)
    return {"source": "d.csv", "target": "price", "max_bytes": 1000}


def _split_folders(tmp):
    for split in ("train", "test"):
        make_shapes(tmp / "imgs" / split, per_class=4)
    return {"source": "imgs"}


def _empty_image(tmp):
    make_shapes(tmp / "imgs", per_class=4)
    (tmp / "imgs" / "circle" / "circle_001.png").write_bytes(b"")
    return {"source": "imgs"}


def _huge_image(tmp):
    make_shapes(tmp / "imgs", per_class=4)
    Image.new("L", (400, 300)).save(tmp / "imgs" / "square" / "huge.png")
    return {"source": "imgs", "max_image_pixels": 100_000}


def _utf16_csv(tmp):
    text = "città,y\n" + "".join(f"{i}.5,{i % 2}\n" for i in range(40))
    (tmp / "d.csv").write_bytes(text.encode("utf-16"))
    return {"source": "d.csv", "target": "y", "encoding": "utf-16"}


ROWS = "".join(f"{i},{i % 3}\n" for i in range(60))
CASES = [
    Case(
        "yaml-syntax",
        _params_text("data:\n  source: [digits\n"),
        ("YAML syntax error", "params.yaml:"),
    ),
    Case("unknown-key", _params_text("data:\n  sorce: digits\n"), ("did you mean 'data.source'",)),
    Case(
        "wrong-type",
        _params_text("augment:\n  multiplier: many\n"),
        ("augment.multiplier = 'many'",),
    ),
    Case(
        "splits-sum-to-1",
        _params_text("data:\n  val_size: 0.5\n  test_size: 0.5\n"),
        ("data.val_size + data.test_size = 0.5 + 0.5 = 1 leaves no training data",),
    ),
    Case("missing-source", _params_text("data:\n  source: nope.csv\n"), ("no such file",)),
    Case("empty-csv", _csv(""), ("d.csv", "empty")),
    Case("header-only-csv", _csv("a,y\n"), ("d.csv", "no data rows")),
    Case("truncated-csv", _csv("a,b,y\n" + "1,2,x\n" * 40 + "1,"), ("d.csv", "truncated")),
    Case("truncated-png", _truncated_png, ("circle_001.png", "corrupt or truncated")),
    Case(
        "labels-out-of-range",
        _npz(X=np.zeros((30, 2)), y=np.arange(30) % 4, classes=np.array(["a", "b", "c"])),
        ("outside 0..2",),
    ),
    Case(
        "nan-features",
        _npz(X=np.r_[np.zeros((29, 2)), [[np.nan, 1]]], y=np.arange(30) % 3),
        ("X row 29", "non-finite"),
    ),
    Case("inf-csv", _csv("a,y\n" + "1,0\n2,1\n" * 20 + "inf,1\n"), ("column 'a'", "line 42")),
    Case("one-class", _csv("a,y\n" + "1,k\n" * 30), ("d.csv, target column 'y'", "only one class")),
    Case(
        "rare-class",
        _csv("a,y\n" + "1,k\n2,j\n" * 15 + "3,z\n"),
        ("d.csv, target column 'y'", "class 'z' has 1 row(s)"),
    ),
    Case("split-folders", _split_folders, ("look like data splits", "point data.source at")),
    Case("zero-byte-image", _empty_image, ("circle_001.png", "empty (0 bytes)")),
    Case("oversized-image", _huge_image, ("huge.png", "exceeds data.max_image_pixels = 100,000")),
    Case("2-d-npz-table", _npz(X=np.arange(120.0).reshape(40, 3), y=np.arange(40) % 2), ()),
    Case("utf-16-csv", _utf16_csv, ()),
    Case(
        "constant-regression-target",
        _csv("a,y\n" + "".join(f"{i},5\n" for i in range(30)), task="regression"),
        ("target column 'y'", "regression target is constant"),
    ),
    Case("free-text-target", _free_text, ("10,000 distinct values", "free text")),
    Case("over-max-bytes", _too_big, ("exceeds data.max_bytes = 1,000",)),
    Case("mixed-image-modes-and-sizes", _mixed_images, ()),
    Case(
        "non-utf8-csv", _csv(("c,y\n" + "Málaga,1\nZürich,2\nKöln,3\n" * 20).encode("cp1252")), ()
    ),
    Case("int-target-small-cardinality", _csv("a,y\n" + ROWS), ()),
]


def _run(tmp: Path, case: Case):
    made = case.make(tmp)
    if isinstance(made, str):
        (tmp / "params.yaml").write_text(made)
    else:
        base = yaml.safe_load((REPO / "params.yaml").read_text())
        base["data"] = {**base["data"], **made}
        (tmp / "params.yaml").write_text(yaml.safe_dump(base))
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "PYTHONPATH": str(REPO),
    }
    return run_stage("prepare", tmp, env, "--out", "out", timeout=300)


@pytest.mark.integration
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_prepare_cli(tmp_path, case, reliability):
    res = _run(tmp_path, case)
    if not case.expect:
        assert res.returncode == 0, res.stderr[-2000:]
        assert (tmp_path / "out" / "train" / "split.json").exists()
        schema = json.loads((tmp_path / "out" / "schema.json").read_text())
        reliability.record(
            "bad input",
            f"prepare: {case.name}",
            "accepted (converted / decoded)",
            before={"outputs": 0},
            after={"exit": 0, "rows": schema["rows"], "input": schema["input_shape"]},
        )
        return
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    err = res.stderr.strip().splitlines()[-1] if "\n  " not in res.stderr else res.stderr
    for fragment in case.expect:
        assert fragment in err, res.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow run, not even a store
    said = next(line for line in res.stderr.splitlines() if case.expect[0] in line)
    said = said.strip().replace(str(tmp_path), "<tmp>")
    reliability.record(
        "bad input",
        f"prepare: {case.name}",
        f"exit 2 before any compute: `{said[:150]}`",
        before={"outputs": 0, "MLflow store": False},
        after={"exit": res.returncode, "outputs": 0, "MLflow store": False},
    )


def _ambiguous_table(tmp: Path) -> None:
    rng = np.random.default_rng(0)
    n = 120
    prices = [f"{x:.2f}" if i % 20 else "n/a" for i, x in enumerate(rng.normal(100, 10, n))]
    frame = pd.DataFrame(
        {
            "user": [f"u{i:05d}" for i in range(n)],
            "price": prices,
            "when": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "color": rng.choice(["red", "green", "blue"], n),
            "tags": [[1, i % 3] for i in range(n)],
            "y": rng.integers(0, 2, n),
        }
    )
    frame.to_parquet(tmp / "d.parquet")


@pytest.mark.integration
def test_ambiguous_columns_are_named_and_data_columns_decides(tmp_path, reliability):
    _ambiguous_table(tmp_path)
    res = _run(tmp_path, Case("ambiguous", lambda t: {"source": "d.parquet", "target": "y"}, ()))
    assert res.returncode == 0, res.stderr[-2000:]
    said = {
        "user": "every value is distinct",
        "price": "95% numbers and 6 text value(s) (e.g. 'n/a')",
        "when": "looks like dates",
        "tags": "holds nested values",
    }
    for col, fragment in said.items():
        line = next((ln for ln in res.stderr.splitlines() if f"column {col!r}" in ln), "")
        assert fragment in line and "data.columns" in line or "flatten" in line, res.stderr
    assert "column 'color'" not in res.stderr  # a real category: nothing to say
    features = json.loads((tmp_path / "out" / "schema.json").read_text())["feature_names"]
    assert not any(f.startswith("tags") for f in features)  # nested: dropped
    assert sum(f.startswith("price") for f in features) > 1  # one-hot, as the warning says

    decided = {
        "source": "d.parquet",
        "target": "y",
        "columns": {"price": "numeric", "user": "drop"},
    }
    res = _run(tmp_path, Case("decided", lambda t: decided, ()))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "column 'price': read as numbers (data.columns); 6 value(s)" in res.stderr
    features = json.loads((tmp_path / "out" / "schema.json").read_text())["feature_names"]
    assert "price" in features and not any(f.startswith("user") for f in features)

    typo = {**decided, "columns": {"prise": "numeric"}}
    res = _run(tmp_path, Case("typo", lambda t: typo, ()))
    assert res.returncode == 2 and "did you mean 'price'?" in res.stderr, res.stderr[-2000:]
    reliability.record(
        "bad input",
        "prepare: a table with an ID, numbers with 'n/a', date strings and a nested column",
        "one warning per column naming it, what was done and the data.columns setting; "
        "data.columns: {price: numeric, user: drop} honoured; a misspelt column refused",
        before={"warnings": 0},
        after={"warned columns": len(said), "decided by data.columns": 2, "typo exit": 2},
    )
