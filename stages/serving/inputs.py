"""Raw input -> the float32 arrays the candidate was scored on, exactly as prepare made them.

Tables go through prepare's own column normalization and its fitted transformer (NaN
imputed, unseen categories encoded as in training); images through prepare's decoder;
arrays through prepare's scaling. Anything that does not fit is refused with an
`InputError` naming the column, row or file, what was found and what was expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stages.common.preprocess import apply_arrays, decode_image, normalize_columns
from stages.serving.errors import InputError
from stages.serving.spec import ServingSpec

IMAGE_COLUMN = "image"


def to_arrays(spec: ServingSpec, data: Any, preprocessor: Any = None) -> np.ndarray:
    """The model input (DataFrame, ndarray, dict or list of records) as prepared float32."""
    if spec.input == "table":
        return table(spec, _frame(data), preprocessor)
    if spec.input == "files":
        return images(spec, data)
    return arrays(spec, data)


def _frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, dict | list):
        frame = pd.DataFrame(data)
    else:
        raise InputError(
            f"input is a {type(data).__name__}; expected a table of rows (a pandas DataFrame, "
            "a dict of columns or a list of row dicts)"
        )
    if len(frame) == 0:
        raise InputError("input has no rows; expected at least one row to score")
    return frame


def check_columns(spec: ServingSpec, columns: list[str]) -> list[str]:
    """Refuse missing columns; extra ones per `serve.extra_columns`. Returns the unknown ones."""
    expected = spec.columns
    missing = [c for c in expected if c not in columns]
    if missing:
        raise InputError(
            f"missing column(s) {missing}: the model was trained on {expected}; "
            f"the input has {list(columns)}"
        )
    known = set(spec.prep.get("source_columns", [])) | {spec.prep.get("target")}
    unknown = [c for c in columns if c not in expected and c not in known]
    if unknown and spec.extra_columns == "error":
        raise InputError(
            f"unexpected column(s) {unknown}: the model was trained on {expected}; remove "
            "them, or package with serve.extra_columns: ignore"
        )
    return unknown


def typed_columns(spec: ServingSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The training columns, in training order, each in its training (signature) dtype."""
    kinds = spec.prep.get("column_kinds", {})
    typed = {
        col: _typed(col, frame[col], kind, kinds.get(col) == "numeric")
        for col, kind in spec.prep["column_types"].items()
    }
    return pd.DataFrame(typed, index=frame.index)


def table(spec: ServingSpec, frame: pd.DataFrame, preprocessor: Any) -> np.ndarray:
    frame = frame.rename(columns=str)
    check_columns(spec, list(frame.columns))
    normalized, _, _ = normalize_columns(typed_columns(spec, frame))
    try:
        out = preprocessor.transform(normalized)
    except ValueError as exc:  # sklearn's own check, e.g. a dtype it cannot encode
        raise InputError(f"the table does not match the training columns: {exc}") from None
    return np.asarray(out, dtype=np.float32)


def _typed(col: str, s: pd.Series, kind: str, coerce: bool) -> pd.Series:
    """One column in its training dtype; values that cannot be are refused by row."""
    if kind == "string":
        text = s.astype(object)
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            text = text.where(s.isna(), s.astype(str))
        return text
    if kind == "boolean":
        if pd.api.types.is_bool_dtype(s):
            return s
        words = s.map(lambda v: str(v).strip().lower() if pd.notna(v) else v)
        mapped = words.map({"true": True, "false": False, "1": True, "0": False, "1.0": True})
        _refuse(col, s, mapped.isna() & s.notna(), "true/false")
        return mapped.astype("boolean").astype(float)
    if kind == "datetime":
        parsed = pd.to_datetime(s, errors="coerce")
        _refuse(col, s, parsed.isna() & s.notna(), "a date/time")
        return parsed
    if pd.api.types.is_bool_dtype(s):
        return s.astype(np.float64)
    if pd.api.types.is_numeric_dtype(s):
        return s
    numbers = pd.to_numeric(s.map(lambda v: v.strip() if isinstance(v, str) else v)
                            .replace("", np.nan), errors="coerce")  # fmt: skip
    if not coerce:  # data.columns forced it numeric: training turned text into missing
        _refuse(col, s, numbers.isna() & s.notna(), "a number")
    return numbers


def _refuse(col: str, s: pd.Series, bad: pd.Series, expected: str) -> None:
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"column {col!r} row {s.index[pos]}: {s.iloc[pos]!r} is not {expected}; the model was "
            f"trained on {expected} in {col!r} ({int(bad.sum())} row(s) affected)"
        )


def images(spec: ServingSpec, data: Any) -> np.ndarray:
    """Encoded images, file paths or uint8 H x W [x C] arrays -> prepared (N, C, H, W)."""
    items = _image_items(data)
    channels = int(spec.prep["channels"])
    height, width = spec.prep["size"]
    out = np.empty((len(items), channels, height, width), dtype=np.uint8)
    for i, item in enumerate(items):
        try:
            out[i] = decode_image(item, channels, (width, height))
        except (OSError, ValueError, SyntaxError, TypeError) as exc:
            what = (
                f"file {item!r}"
                if isinstance(item, str)
                else "encoded bytes"
                if isinstance(item, bytes)
                else f"a {type(item).__name__}"
            )
            raise InputError(
                f"row {i} ({what}): not a readable image ({exc}); expected encoded image "
                "bytes (PNG, JPEG, ...), an image file path or a uint8 H x W [x C] array"
            ) from None
    return apply_arrays(out, spec.prep)


def _image_items(data: Any) -> list[Any]:
    if isinstance(data, pd.DataFrame):
        if IMAGE_COLUMN not in data.columns:
            raise InputError(
                f"missing column {IMAGE_COLUMN!r}; the input has {list(data.columns)}; "
                f"expected one column {IMAGE_COLUMN!r} of encoded images or file paths"
            )
        items = list(data[IMAGE_COLUMN])
    elif isinstance(data, np.ndarray) and data.dtype == np.uint8:
        items = (
            [data]
            if data.ndim == 2 or (data.ndim == 3 and data.shape[-1] in (3, 4))
            else list(data)
        )
    elif isinstance(data, list | tuple):
        items = list(data)
    else:
        raise InputError(
            f"input is a {type(data).__name__}; expected a DataFrame with an "
            f"{IMAGE_COLUMN!r} column, a list of images or a uint8 array"
        )
    if not items:
        raise InputError("input has no images; expected at least one")
    return [bytes(v) if isinstance(v, bytearray) else v for v in items]


def arrays(spec: ServingSpec, data: Any) -> np.ndarray:
    """Arrays of the source's feature shape (or flattened rows of it) -> prepared arrays."""
    shape = tuple(spec.input_shape)
    X = data.to_numpy() if isinstance(data, pd.DataFrame) else np.asarray(data)
    if X.ndim == 2 and X.shape[1:] != shape and X.shape[1] == int(np.prod(shape)):
        X = X.reshape(len(X), *shape)
    if X.shape[1:] != shape:
        raise InputError(
            f"input has shape {tuple(X.shape)}; expected (rows, {', '.join(map(str, shape))})"
        )
    if len(X) == 0:
        raise InputError("input has no rows; expected at least one row to score")
    if not np.issubdtype(X.dtype, np.number):
        raise InputError(f"input has dtype {X.dtype}; expected real numbers")
    finite = np.isfinite(X.reshape(len(X), -1)).all(axis=1)
    if not finite.all():
        raise InputError(f"input row {int(np.argmin(finite))} has a non-finite value")
    return apply_arrays(X, spec.prep)
