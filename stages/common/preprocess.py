"""The preprocessing prepare fits, applied one way at training and at serving time.

prepare calls these on the source; the served model (stages/serving) calls the same
functions on new rows and images, so a row scores the same in evaluate and in production.
- tables: `normalize_columns` (plain dtypes sklearn handles) before the fitted transformer;
- images: `decode_image` (colour mode, resize) and `apply_arrays` (scaling);
- arrays/sequences: `apply_arrays` (scale, or standardize with train statistics).
"""

from __future__ import annotations

import contextlib
import io as _io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def normalize_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Split columns into numeric and categorical, with plain dtypes sklearn handles."""
    columns: dict[str, pd.Series] = {}
    numeric, categorical = [], []
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_bool_dtype(s):
            columns[col] = s.astype(np.float32)
        elif pd.api.types.is_datetime64_any_dtype(s):
            seconds = s.dt.as_unit("ns").astype("int64").where(s.notna()) / 1e9  # any unit
            columns[col] = seconds.astype(np.float32)
        elif pd.api.types.is_numeric_dtype(s):
            # float32 end to end: sklearn's imputer and scalers keep it, halving peak memory
            columns[col] = s.astype(np.float32)  # lazy under pandas copy-on-write
        else:
            columns[col] = as_text(s)
            categorical.append(col)
            continue
        numeric.append(col)
    return pd.DataFrame(columns, copy=False), numeric, categorical


def as_text(s: pd.Series) -> pd.Series:
    """A categorical column as the encoders saw it in training: str values, NaN missing."""
    text = s.astype(object).where(s.notna(), np.nan)
    if pd.api.types.is_string_dtype(s) and not pd.api.types.is_object_dtype(s):
        return text  # a str dtype holds only str values: nothing to convert, value by value
    return text.map(_text)


def _text(value: object) -> object:
    return value if isinstance(value, float) else str(value)


def column_type(s: pd.Series) -> str:
    """The MLflow signature type of a training column (after `data.columns`)."""
    if pd.api.types.is_bool_dtype(s):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime"
    if pd.api.types.is_integer_dtype(s):
        return "long"  # as MLflow's infer_signature: a raw int64 column passes as it is
    if pd.api.types.is_numeric_dtype(s):
        return "double"
    return "string"


def apply_arrays(X: np.ndarray, prep: dict[str, Any]) -> np.ndarray:
    """Images: scale (uint8 or raw values -> float32); sequences: standardize per feature."""
    if prep["kind"] == "image":
        return (X.astype(np.float32) * np.float32(prep["scale"])).astype(np.float32)
    mean = np.asarray(prep["mean"], dtype=np.float32)
    scale = np.asarray(prep["scale"], dtype=np.float32)
    return ((X.astype(np.float32) - mean) / scale).astype(np.float32)


@contextlib.contextmanager
def own_pixel_limit():
    """PIL's decompression-bomb check off: data.max_image_pixels, checked on the headers
    before any pixel is decoded, refuses by file name instead of PIL's bare traceback."""
    from PIL import Image

    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def decode_image(
    source: str | Path | bytes | np.ndarray, channels: int, size_wh: tuple[int, int]
) -> np.ndarray:
    """One image as uint8 (C, H, W): a file path, encoded bytes or an H x W [x C] array.

    Raises OSError / ValueError / SyntaxError for what PIL cannot read (callers name it).
    """
    from PIL import Image

    if isinstance(source, np.ndarray):
        img = Image.fromarray(_uint8_image(source))
        return _converted(img, channels, size_wh)
    handle = _io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    with Image.open(handle) as img:
        img.load()
        return _converted(img, channels, size_wh)


def _uint8_image(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"array of shape {arr.shape}; expected H x W, H x W x 3 or H x W x 4")
    if arr.dtype != np.uint8:
        raise ValueError(f"array of dtype {arr.dtype}; expected uint8 pixels (0..255)")
    return arr


def _converted(img, channels: int, size_wh: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if img.mode in ("I", "I;16", "F"):
        arr = np.asarray(img, dtype=np.float64)
        span = max(float(arr.max() - arr.min()), 1e-12)
        img = Image.fromarray(((arr - arr.min()) / span * 255).astype(np.uint8))
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != size_wh:
        img = img.resize(size_wh, Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)
