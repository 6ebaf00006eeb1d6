"""CSV / Parquet tables: read safely, check the target, drop all-missing columns.

The table is read a chunk at a time and never held whole (stages.prepare.sources.
table_scan): one pass finds the target, counts what the column review needs and keeps a
seeded sample of at most `data.sample_rows` rows; prepare then streams the rows again to
transform and write them. Every refusal happens in that first pass, before any output.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stages.prepare.sources import columns, table_read, table_scan
from stages.prepare.sources.raw import RawData, fingerprint_files
from stages.prepare.sources.table_scan import Scan, TableRows, scan
from stages.runtime.errors import DataError
from stages.schema.data import DataParams

log = logging.getLogger("reprolab.sources")


def load_table(path: Path, data: DataParams, seed: int) -> RawData:
    """Scan the table a chunk at a time; the rows stay on disk (`RawData.X`: TableRows)."""
    size = path.stat().st_size
    if size > data.max_bytes:
        raise DataError(
            f"{path}: {size:,} bytes exceeds data.max_bytes = {data.max_bytes:,}; "
            "raise data.max_bytes or sample the file"
        )
    if size == 0:
        raise DataError(f"{path}: file is empty (0 bytes); expected a header row and data rows")
    encoding, notes = _decide_encoding(path, data)
    found = _scan(path, data, seed, encoding)
    dtypes = table_read.unify(found.kinds) or None
    if dtypes:  # chunks read a column as different types: read again with one type each
        found = _scan(path, data, seed, encoding, dtypes)
    if found.file_rows == 0:
        raise DataError(f"{path}: has a header ({len(found.columns)} columns) but no data rows")
    table_read.refuse_truncated_last_row(path, encoding, len(found.columns))
    target = _check_target(path, found.columns, data.target)
    source_columns = [c for c in found.columns if c != target]
    if len(found.y) == 0:
        raise DataError(
            f"{path}: target column {target!r} is empty (all {found.file_rows} values "
            "missing); expected labels or numbers"
        )
    if found.missing_target:
        notes.append(
            f"dropped {found.missing_target} row(s) with a missing target "
            f"(file lines {found.missing_lines}...)"
        )
    empty_cols = [c for c, scan in found.scans.items() if scan.notna == 0]
    if empty_cols:
        notes.append(f"dropped column(s) with no values at all: {empty_cols}")
    if len(empty_cols) == len(source_columns):
        raise DataError(f"{path}: no feature columns left besides target {target!r}")
    present = {c: scan for c, scan in found.scans.items() if scan.notna}
    decisions, decided = columns.review(path, present, found.sample, data.columns)
    notes += decided
    columns.refuse_infinite(path, present, decisions)
    decisions = {c: decisions.get(c, "drop") for c in source_columns}
    for note in notes:
        log.warning("%s: %s", path.name, note)
    rows = TableRows(
        path=path,
        encoding=encoding,
        dtypes=dtypes,
        target=target,
        decisions=decisions,
        sample=columns.apply(found.sample, decisions),
        sample_rows=found.sample_rows,
        rows=len(found.y),
        chunk_rows=table_scan.CHUNK_ROWS,
    )
    return RawData(
        name=path.stem,
        modality="table",
        X=rows,
        y=found.y,
        fingerprint=fingerprint_files([path], path.parent),
        notes=notes,
        source_columns=source_columns,
    )


def _scan(path: Path, data: DataParams, seed: int, encoding: str, dtypes=None) -> Scan:
    return scan(
        path,
        encoding,
        lambda names: _check_target(path, names, data.target),
        data.sample_rows,
        seed,
        dtypes,
        chunk_rows=table_scan.CHUNK_ROWS,
    )


def _decide_encoding(path: Path, data: DataParams) -> tuple[str, list[str]]:
    """The first of `data.encoding` (or the fallbacks) that decodes the whole file."""
    if table_read.is_parquet(path):
        return "utf-8", []
    candidates = table_read.encodings(data.encoding)
    last: Exception | None = None
    for enc in candidates:
        try:
            _decodes(path, enc)
        except UnicodeDecodeError as exc:
            last = exc
            continue
        except LookupError:
            raise DataError(f"{path}: unknown encoding data.encoding = {data.encoding!r}") from None
        notes = []
        if enc not in ("utf-8-sig", data.encoding):
            notes.append(f"not valid UTF-8; decoded as {enc} (set data.encoding to override)")
        return enc, notes
    raise DataError(
        f"{path}: cannot decode as {', '.join(candidates)}: {last}; "
        "set data.encoding to the file's encoding"
    )


def _decodes(path: Path, encoding: str) -> None:
    """Decode the file a block at a time (raises UnicodeDecodeError where it is not)."""
    import codecs

    decoder = codecs.getincrementaldecoder(encoding)()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            decoder.decode(block)
        decoder.decode(b"", final=True)


def _check_target(path: Path, cols: list[str], target: str | None) -> str:
    if target is None:
        raise DataError(f"{path}: data.target is required for a table; columns are {cols}")
    if target not in cols:
        import difflib

        close = difflib.get_close_matches(target, cols, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(f"{path}: data.target = {target!r} is not a column{hint} (columns: {cols})")
    return target
