"""Bad input to the served model: refused with one message naming the column, row or file.

The runtime (stages/serving/inputs.py) is fed from real prepare outputs of the shipped
examples; the predict CLI refuses models that are not ours and URIs that do not exist.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.common import splits
from stages.common.skops_files import load_trusted
from stages.serving.errors import InputError
from stages.serving.inputs import to_arrays
from stages.serving.spec import ServingSpec, input_kind
from tests.conftest import REPO

HOUSES = REPO / "data" / "raw" / "examples" / "houses.csv"
SHAPES = REPO / "data" / "raw" / "examples" / "shapes"


def _spec(prepared, extra_columns: str = "error") -> ServingSpec:
    from stages.common.io import read_schema

    schema = read_schema(prepared)
    prep = schema["preprocessing"]
    return ServingSpec(
        task=schema["task"],
        classes=schema.get("classes"),
        input=input_kind(prep),
        input_shape=schema["input_shape"],
        prep=prep,
        candidate="c",
        kind="baseline",
        candidate_file="c.skops",
        extra_columns=extra_columns,
    )


@pytest.fixture
def table(prepared):
    out = prepared(str(HOUSES), target="sold_fast")
    return out, load_trusted(out / "preprocessor.skops")


def _rows() -> pd.DataFrame:
    return pd.read_csv(HOUSES).drop(columns=["sold_fast"]).head(6)


def test_raw_rows_become_exactly_the_prepared_rows(table):
    out, pre = table
    raw = pd.read_csv(HOUSES)
    X = to_arrays(_spec(out), raw.drop(columns=["sold_fast"]), pre)
    first = splits.head(out / "train", 1)[0]
    assert any(np.allclose(row, first, atol=1e-6) for row in X)  # the same transform


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: f.drop(columns=["neighborhood"]), "missing column(s) ['neighborhood']"),
        (lambda f: f.assign(colour="red"), "unexpected column(s) ['colour']"),
        (lambda f: f.iloc[:0], "no rows"),
        (
            lambda f: f.assign(rooms=f["rooms"].astype(object).where(f.index != 3, "three")),
            "column 'rooms' row 3: 'three' is not a number",
        ),
    ],
    ids=["missing-column", "extra-column", "empty", "text-in-a-number-column"],
)
def test_bad_rows_are_refused_by_name(table, reliability, change, expected):
    out, pre = table
    with pytest.raises(InputError) as err:
        to_arrays(_spec(out), change(_rows()), pre)
    assert expected in err.value.message
    reliability.record(
        "bad input", f"served model: {expected.split(':')[0]}", f"refused: {expected}",
        before={"rows": 6}, after={"rows scored": 0},
    )  # fmt: skip


def test_extra_columns_ignored_on_request_and_blanks_and_new_categories_score(table):
    out, pre = table
    rows = _rows().assign(colour="red", sold_fast="yes")  # the target is known, so ignored
    rows.loc[rows.index[0], ["area", "neighborhood"]] = [np.nan, None]
    rows.loc[rows.index[1], "condition"] = "never seen in training"
    X = to_arrays(_spec(out, extra_columns="ignore"), rows, pre)
    assert X.shape[0] == 6 and np.isfinite(X).all()


def test_bad_images_and_arrays_are_refused_by_row(prepared, reliability):
    out = prepared(str(SHAPES), image_size=[16, 16])
    spec = _spec(out)
    good = next(SHAPES.rglob("*.png")).read_bytes()
    cases = [
        (
            pd.DataFrame({"image": [good, b"not an image"]}),
            "row 1 (encoded bytes): not a readable image",
        ),
        (pd.DataFrame({"image": ["/no/such.png"]}), "row 0 (file '/no/such.png')"),
        (pd.DataFrame({"picture": [good]}), "missing column 'image'"),
        (np.zeros((2, 5), dtype=np.float32), "expected a DataFrame with an 'image' column"),
        (pd.DataFrame({"image": [np.zeros((4, 4), np.float64)]}), "expected uint8 pixels"),
    ]
    for data, expected in cases:
        with pytest.raises(InputError) as err:
            to_arrays(spec, data)
        assert expected in err.value.message, err.value.message
    assert to_arrays(spec, pd.DataFrame({"image": [good]})).shape == (1, 3, 16, 16)  # RGB mix
    digits = prepared("digits")
    arrays = _spec(digits)
    with pytest.raises(InputError, match=r"shape \(2, 3\); expected \(rows, 1, 8, 8\)"):
        to_arrays(arrays, np.zeros((2, 3), np.float32))
    bad = np.zeros((2, 1, 8, 8), np.float32)
    bad[1, 0, 2, 2] = np.inf
    with pytest.raises(InputError, match="row 1 has a non-finite value"):
        to_arrays(arrays, bad)
    assert to_arrays(arrays, np.zeros((2, 64), np.float32)).shape == (2, 1, 8, 8)  # flat rows
    reliability.record(
        "bad input", "served model: corrupt image, missing image column, wrong array shape",
        "refused naming the row/file, what was found and what was expected",
        before={"cases": len(cases) + 2}, after={"refused": len(cases) + 2},
    )  # fmt: skip


def test_predict_refuses_models_that_are_not_ours(tmp_path, capsys, monkeypatch, reliability):
    from stages.predict.command import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    csv = tmp_path / "rows.csv"
    _rows().to_csv(csv, index=False)
    (tmp_path / "plain").mkdir()
    import mlflow

    code = tmp_path / "other.py"
    code.write_text(
        "import mlflow\n\n\nclass M(mlflow.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return model_input\n\n\nmlflow.models.set_model(M())\n"
    )
    mlflow.pyfunc.save_model(str(tmp_path / "theirs"), python_model=str(code))
    cases = {
        str(tmp_path / "absent"): "no such folder",
        str(tmp_path / "plain"): "not an MLflow model folder",
        str(tmp_path / "theirs"): "not one the package stage wrote",
        "models:/reprolab-nothing@champion": "models:/reprolab-nothing@champion",
    }
    for model, expected in cases.items():
        out = tmp_path / "out.csv"
        assert main(["--model", model, "--input", str(csv), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err
        assert not out.exists()
    reliability.record(
        "bad input", "predict --model: missing folder, plain folder, foreign MLflow model, "
        "unknown models:/ URI", "exit 2 naming the model; no output file",
        before={"cases": len(cases)}, after={"refused": len(cases)},
    )  # fmt: skip
