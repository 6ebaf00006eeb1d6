"""A CSV or Parquet table as a stream of row chunks, with its read errors named.

Nothing here holds the whole table: `chunks` yields `DataFrame`s of at most `rows` rows in
file order (pandas' chunked CSV reader, pyarrow's Parquet batches). Each chunk infers its
own column types; `unify` says which types make the chunks agree, and a second read with
those (`dtypes`) gives every chunk the types a whole-file read would give.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from stages.runtime.errors import DataError

FALLBACK_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def encodings(encoding: str) -> tuple[str, ...]:
    """The encodings to try in turn: `data.encoding`, or the fallbacks for `auto`."""
    return FALLBACK_ENCODINGS if encoding == "auto" else (encoding,)


def chunks(
    path: Path, encoding: str, rows: int, dtypes: dict[str, str] | None = None
) -> Iterator[pd.DataFrame]:
    """The table's rows, `rows` at a time. A CSV that is not `encoding` raises
    UnicodeDecodeError (the caller tries the next); other faults raise DataError."""
    if is_parquet(path):
        yield from _parquet_chunks(path, rows, dtypes)
        return
    try:
        reader = pd.read_csv(
            path, encoding=encoding, on_bad_lines="error", chunksize=rows, dtype=dtypes
        )
        with reader:
            for chunk in reader:
                chunk.columns = [str(c) for c in chunk.columns]
                yield chunk
    except UnicodeDecodeError:
        raise
    except LookupError:
        raise DataError(f"{path}: unknown encoding data.encoding = {encoding!r}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: no columns found; expected a header row") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from None
    except (ValueError, TypeError) as exc:  # a unified type a later value does not fit
        raise DataError(f"{path}: cannot read a column with one type: {exc}") from None


def header(path: Path, encoding: str) -> list[str]:
    """The column names (for a table without data rows)."""
    if is_parquet(path):
        import pyarrow.parquet as pq

        return [str(c) for c in pq.ParquetFile(path).schema_arrow.names]
    return [str(c) for c in pd.read_csv(path, encoding=encoding, nrows=0).columns]


def _parquet_chunks(path: Path, rows: int, dtypes: dict[str, str] | None):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        batches = pf.iter_batches(batch_size=rows)
        for batch in batches:
            chunk = batch.to_pandas()
            chunk.columns = [str(c) for c in chunk.columns]
            yield chunk.astype(dtypes) if dtypes else chunk
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: cannot read as Parquet: {type(exc).__name__}: {exc}") from None


def kind(s: pd.Series) -> str:
    """A column's type family in one chunk: b(ool), i(nt), f(loat), M (datetime), O (text)."""
    family = s.dtype.kind  # numpy's letter; pandas' extension dtypes give theirs ("O": str)
    return {"u": "i", "c": "f"}.get(family, family) if family in "biufcM" else "O"


def unify(kinds: dict[str, set[str]]) -> dict[str, str]:
    """Types for the columns whose chunks disagreed: floats where ints met floats (missing
    values), text otherwise (a whole-file read keeps such a column as text too)."""
    out = {}
    for col, seen in kinds.items():
        if len(seen) > 1:
            out[col] = "float64" if seen <= {"i", "f"} else "str"
    return out


def refuse_truncated_last_row(path: Path, encoding: str, n_cols: int) -> None:
    """A CSV whose last line has fewer fields than the header and no final newline."""
    if is_parquet(path):
        return
    if _byte_newlines(encoding):
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            end = fh.tell()
            fh.seek(max(0, end - 65536))
            tail = fh.read()
        if tail.endswith((b"\n", b"\r")):
            return
        last_line = tail.splitlines()[-1].decode(encoding, errors="replace") if tail else ""
    else:  # UTF-16/32 and BOM encodings: decode the end of the file
        last_line = _last_line(path, encoding)
        if last_line is None:
            return
    fields = next(csv.reader([last_line]), [])
    if 0 < len(fields) < n_cols:
        raise DataError(
            f"{path}: last row looks truncated ({len(fields)} of {n_cols} fields "
            f"and no final newline, decoded as {encoding}); the file may be cut off"
        )


def _last_line(path: Path, encoding: str) -> str | None:
    """The last line of a text file in a multi-byte encoding; None if it ends a line."""
    last = None
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        for line in fh:  # streamed: one line in memory at a time
            last = line
    if not last or last.endswith(("\n", "\r")):
        return None
    return last


def _byte_newlines(encoding: str) -> bool:
    """True when the encoding writes text's newline as the single byte 0x0A (ASCII-like)."""
    return "a\n".encode(encoding) == b"a\n"
