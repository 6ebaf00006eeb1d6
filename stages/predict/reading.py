"""Input for predict, read in chunks so memory follows the chunk, not the file.

Tables: CSV (a path or `-` for stdin), each chunk cast to the model's signature dtypes,
refusing a bad value by its data row. Images: an image folder or one image file, passed
to the model as paths. Arrays: `.npy` (memory-mapped) or `.npz` with an `X` array.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.common.preprocess import IMAGE_SUFFIXES
from stages.runtime.errors import UserError
from stages.serving.inputs import IMAGE_COLUMN, check_columns, typed_columns
from stages.serving.spec import ServingSpec


@dataclass
class Chunk:
    data: Any  # what the pyfunc takes
    ids: pd.DataFrame | None  # columns put in front of the answer (image files)
    rows: int


def chunks(spec: ServingSpec, source: str, rows: int) -> Iterator[Chunk]:
    if spec.input == "table":
        return _table(spec, source, rows)
    if spec.input == "files":
        return _images(source, rows)
    return _arrays(spec, source, rows)


def _table(spec: ServingSpec, source: str, rows: int) -> Iterator[Chunk]:
    if source != "-":
        path = Path(source)
        if not path.is_file():
            raise UserError(f"--input {source}: no such file; expected a CSV of raw rows")
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            for start in range(0, len(frame), rows):
                yield _table_chunk(spec, frame.iloc[start : start + rows], source)
            return
    strings = [c for c, t in spec.prep["column_types"].items() if t == "string"]
    try:
        reader = pd.read_csv(
            sys.stdin if source == "-" else source,
            chunksize=rows,
            dtype=dict.fromkeys(strings, str),
        )
        first = True
        for frame in reader:
            if first and len(frame) == 0:
                break
            first = False
            yield _table_chunk(spec, frame, source)
        if first:
            raise UserError(f"--input {source}: no data rows; expected a header and rows")
    except pd.errors.EmptyDataError:
        raise UserError(f"--input {source}: empty; expected a CSV header and rows") from None
    except pd.errors.ParserError as exc:
        raise UserError(f"--input {source}: malformed CSV: {exc}") from None


def _table_chunk(spec: ServingSpec, frame: pd.DataFrame, source: str) -> Chunk:
    frame = frame.rename(columns=str)
    try:
        check_columns(spec, list(frame.columns))
        typed = typed_columns(spec, frame)
    except Exception as exc:  # InputError: name the file as well
        raise UserError(f"--input {source}: {getattr(exc, 'message', exc)}") from None
    return Chunk(typed, None, len(frame))


def image_files(source: str) -> list[Path]:
    path = Path(source)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"--input {source}: no such file or folder; expected images")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(
            f"--input {source}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in it"
        )
    return files


def _images(source: str, rows: int) -> Iterator[Chunk]:
    files = image_files(source)
    for start in range(0, len(files), rows):
        part = [str(p) for p in files[start : start + rows]]
        yield Chunk(pd.DataFrame({IMAGE_COLUMN: part}), pd.DataFrame({"file": part}), len(part))


def _arrays(spec: ServingSpec, source: str, rows: int) -> Iterator[Chunk]:
    path = Path(source)
    if not path.is_file():
        raise UserError(f"--input {source}: no such file; expected .npy or .npz with X")
    try:
        if path.suffix == ".npy":
            X = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as npz:
                if "X" not in npz.files:
                    raise UserError(f"--input {source}: no array 'X' (found {npz.files})")
                X = npz["X"]
    except (ValueError, OSError) as exc:
        raise UserError(f"--input {source}: not a readable numpy file: {exc}") from None
    for start in range(0, len(X), rows):
        part = np.asarray(X[start : start + rows], dtype=np.float32)
        yield Chunk(part, None, len(part))
