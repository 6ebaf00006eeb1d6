"""CSV / Parquet tables: read safely, check the target, drop all-missing columns."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from stages.prepare.sources import columns
from stages.prepare.sources.raw import RawData, fingerprint_files
from stages.runtime.errors import DataError
from stages.schema.data import DataParams

log = logging.getLogger("reprolab.sources")

FALLBACK_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")


def load_table(path: Path, data: DataParams) -> RawData:
    size = path.stat().st_size
    if size > data.max_bytes:
        raise DataError(
            f"{path}: {size:,} bytes exceeds data.max_bytes = {data.max_bytes:,}; "
            "raise data.max_bytes or sample the file"
        )
    if size == 0:
        raise DataError(f"{path}: file is empty (0 bytes); expected a header row and data rows")
    frame, notes = (
        _read_parquet(path)
        if path.suffix.lower() in (".parquet", ".pq")
        else _read_csv(path, data.encoding)
    )
    if frame.empty or len(frame) == 0:
        raise DataError(f"{path}: has a header ({len(frame.columns)} columns) but no data rows")
    frame.columns = [str(c) for c in frame.columns]
    target = _check_target(path, frame, data.target)
    y = frame.pop(target)
    source_columns = list(frame.columns)
    missing_y = y.isna().to_numpy()
    if missing_y.all():
        raise DataError(
            f"{path}: target column {target!r} is empty (all {len(y)} values "
            "missing); expected labels or numbers"
        )
    if missing_y.any():
        rows = np.flatnonzero(missing_y)[:5] + 2
        notes.append(
            f"dropped {int(missing_y.sum())} row(s) with a missing target "
            f"(file lines {rows.tolist()}...)"
        )
        frame, y = (
            frame.loc[~missing_y].reset_index(drop=True),
            y[~missing_y].reset_index(drop=True),
        )
    empty_cols = [c for c in frame.columns if frame[c].isna().all()]
    if empty_cols:
        notes.append(f"dropped column(s) with no values at all: {empty_cols}")
        frame = frame.drop(columns=empty_cols)
    if frame.shape[1] == 0:
        raise DataError(f"{path}: no feature columns left besides target {target!r}")
    frame, decided = columns.review(path, frame, data.columns)
    notes += decided
    _refuse_infinite(path, frame)
    for note in notes:
        log.warning("%s: %s", path.name, note)
    return RawData(
        name=path.stem,
        modality="table",
        X=frame,
        y=y.to_numpy(),
        fingerprint=fingerprint_files([path], path.parent),
        notes=notes,
        source_columns=source_columns,
    )


def _read_csv(path: Path, encoding: str) -> tuple[pd.DataFrame, list[str]]:
    notes: list[str] = []
    candidates = FALLBACK_ENCODINGS if encoding == "auto" else (encoding,)
    last: Exception | None = None
    for enc in candidates:
        try:
            frame = pd.read_csv(path, encoding=enc, on_bad_lines="error")
        except UnicodeDecodeError as exc:
            last = exc
            continue
        except LookupError:
            raise DataError(f"{path}: unknown encoding data.encoding = {encoding!r}") from None
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: no columns found; expected a header row") from None
        except pd.errors.ParserError as exc:
            raise DataError(f"{path}: malformed CSV: {exc}") from None
        if enc not in ("utf-8-sig", encoding):
            notes.append(f"not valid UTF-8; decoded as {enc} (set data.encoding to override)")
        _refuse_truncated_last_row(path, enc, len(frame.columns))
        return frame, notes
    raise DataError(
        f"{path}: cannot decode as {', '.join(candidates)}: {last}; "
        "set data.encoding to the file's encoding"
    )


def _refuse_truncated_last_row(path: Path, encoding: str, n_cols: int) -> None:
    if _byte_newlines(encoding):
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            end = fh.tell()
            fh.seek(max(0, end - 65536))
            tail = fh.read()
        if tail.endswith((b"\n", b"\r")):
            return
        last_line = tail.splitlines()[-1].decode(encoding, errors="replace") if tail else ""
    else:  # UTF-16/32 and BOM encodings: whole-text decode (the table is in memory anyway)
        text = path.read_text(encoding=encoding, errors="replace")
        if not text or text.endswith(("\n", "\r")):
            return
        last_line = text.splitlines()[-1]
    fields = next(csv.reader([last_line]), [])
    if 0 < len(fields) < n_cols:
        raise DataError(
            f"{path}: last row looks truncated ({len(fields)} of {n_cols} fields "
            f"and no final newline, decoded as {encoding}); the file may be cut off"
        )


def _byte_newlines(encoding: str) -> bool:
    """True when the encoding writes text's newline as the single byte 0x0A (ASCII-like)."""
    return "a\n".encode(encoding) == b"a\n"


def _read_parquet(path: Path) -> tuple[pd.DataFrame, list[str]]:
    try:
        return pd.read_parquet(path), []
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: cannot read as Parquet: {type(exc).__name__}: {exc}") from None


def _check_target(path: Path, frame: pd.DataFrame, target: str | None) -> str:
    cols = list(frame.columns)
    if target is None:
        raise DataError(f"{path}: data.target is required for a table; columns are {cols}")
    if target not in cols:
        import difflib

        close = difflib.get_close_matches(target, cols, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(f"{path}: data.target = {target!r} is not a column{hint} (columns: {cols})")
    return target


def _refuse_infinite(path: Path, frame: pd.DataFrame) -> None:
    numeric = frame.select_dtypes(include="number")
    if numeric.empty:
        return
    bad = np.isinf(numeric.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"{path}: infinite value in column {numeric.columns[col]!r} at data row "
            f"{row + 1} (file line {row + 2}); expected finite numbers or blanks"
        )
