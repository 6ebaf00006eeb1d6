"""One pass over a table, a chunk at a time: the target, per-column counts and a sample.

prepare never holds a whole table. The scan keeps, per row, only its target value (the
split needs every label) and, per column, the counts `columns.ColumnScan` needs; of the
rows themselves it keeps a seeded uniform sample of at most `data.sample_rows`
(`Reservoir`), which the column review and the preprocessing fit read. A table within
that size is kept whole, so prepare fits on exactly what it fitted on before streaming.
`TableRows` then reads the rows again, chunk by chunk, for the transform.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.prepare.sources import columns as review
from stages.prepare.sources import table_read
from stages.runtime.errors import DataError

CHUNK_ROWS = 100_000  # rows read, reviewed and transformed at a time


@dataclass
class Scan:
    """What one pass over the table found."""

    columns: list[str]  # every column of the file, the target included
    kinds: dict[str, set[str]]  # per column: the type families its chunks were read as
    scans: dict[str, review.ColumnScan]  # per feature column, over the rows kept
    y: np.ndarray  # the target of every row kept (rows whose target is present)
    missing_target: int  # rows dropped for a missing target
    missing_lines: list[int]  # the first few of them, as file lines
    sample: pd.DataFrame  # the sampled rows' feature columns, as read
    sample_rows: np.ndarray  # their positions among the rows kept
    file_rows: int = 0


@dataclass
class TableRows:
    """A table's feature rows, read again chunk by chunk with the review applied.

    Positions count the rows kept (those with a target), in file order: the same rows,
    in the same order, as the scan's `y`.
    """

    path: Path
    encoding: str
    dtypes: dict[str, str] | None
    target: str
    decisions: dict[str, review.Decision]  # every feature column of the file
    sample: pd.DataFrame  # reviewed sampled rows
    sample_rows: np.ndarray
    rows: int
    chunk_rows: int = CHUNK_ROWS

    @property
    def columns(self) -> list[str]:
        return [c for c, d in self.decisions.items() if d != "drop"]

    def chunks(self) -> Iterator[tuple[int, pd.DataFrame]]:
        """(position of the first row, reviewed feature rows) for every chunk."""
        start, more = 0, False
        for chunk in table_read.chunks(self.path, self.encoding, self.chunk_rows, self.dtypes):
            kept = chunk.loc[chunk[self.target].notna()]
            frame = review.apply(kept, self.decisions).reset_index(drop=True)
            if start + len(frame) > self.rows:
                more = True
                break
            yield start, frame
            start += len(frame)
        if more or start != self.rows:  # the file was edited since the scan
            raise DataError(
                f"{self.path}: changed while prepare read it ({self.rows:,} rows with a "
                "target when first read, a different count now); run prepare again"
            )

    def take(self, positions: np.ndarray) -> pd.DataFrame:
        """A few rows by position (from the sample when it holds them)."""
        positions = np.asarray(positions, dtype=np.int64)
        at = np.searchsorted(self.sample_rows, positions)
        if np.all(at < len(self.sample_rows)) and np.all(self.sample_rows[at] == positions):
            return self.sample.iloc[at].reset_index(drop=True)
        order = np.argsort(positions, kind="stable")
        wanted, found = positions[order], []
        for start, frame in self.chunks():
            inside = wanted[(wanted >= start) & (wanted < start + len(frame))]
            found.append(frame.iloc[inside - start])
            if start + len(frame) > wanted[-1]:
                break
        picked = pd.concat(found)  # in ascending position: put back in the order asked
        return picked.iloc[np.argsort(order)].reset_index(drop=True)


def scan(
    path: Path,
    encoding: str,
    target_of,
    sample_rows: int,
    seed: int,
    dtypes: dict[str, str] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Scan:
    """Read the table once. `target_of(columns)` names the target column (or refuses)."""
    kinds: dict[str, set[str]] = defaultdict(set)
    scans: dict[str, review.ColumnScan] = {}
    labels, reservoir = _Values(), Reservoir(sample_rows, seed)
    names: list[str] | None = None
    target = ""
    missing, lines, file_row, kept = 0, [], 0, 0
    for chunk in table_read.chunks(path, encoding, chunk_rows, dtypes):
        if names is None:
            names = list(chunk.columns)
            target = target_of(names)
            scans = {c: review.ColumnScan(c) for c in names if c != target}
        for col in names:
            kinds[col].add(table_read.kind(chunk[col]))
        y = chunk[target]
        miss = y.isna().to_numpy()
        file_rows = file_row + np.arange(len(chunk))
        if miss.any():
            missing += int(miss.sum())
            lines += (file_rows[miss][: 5 - len(lines)] + 2).tolist() if len(lines) < 5 else []
            chunk, y, file_rows = chunk.loc[~miss], y[~miss], file_rows[~miss]
        labels.add(y)
        features = chunk.drop(columns=target)
        for col, col_scan in scans.items():
            col_scan.add(features[col], file_rows)
        reservoir.add(features, kept + np.arange(len(features)))
        kept += len(features)
        file_row += len(miss)
    if names is None:  # a header and no rows
        names = table_read.header(path, encoding)
    sample, sampled = reservoir.result()
    return Scan(
        columns=names,
        kinds=dict(kinds),
        scans=scans,
        y=labels.result(),
        missing_target=missing,
        missing_lines=lines,
        sample=sample,
        sample_rows=sampled,
        file_rows=file_row,
    )


class _Values:
    """A column's values gathered over chunks; text kept as codes into its distinct values
    (one pointer a row, not one string object a row)."""

    def __init__(self):
        self.parts: list[np.ndarray] = []
        self.index: dict[object, int] = {}
        self.text = False

    def add(self, s: pd.Series) -> None:
        if table_read.kind(s) in ("b", "i", "f", "M"):
            self.parts.append(s.to_numpy())
            return
        self.text = True
        codes, uniques = pd.factorize(s)
        lookup = np.array([self.index.setdefault(u, len(self.index)) for u in uniques])
        self.parts.append(lookup[codes] if len(uniques) else codes)

    def result(self) -> np.ndarray:
        if not self.parts:
            return np.array([], dtype=object)
        values = np.concatenate(self.parts)
        if not self.text:
            return values
        return np.asarray(list(self.index), dtype=object)[values]


class Reservoir:
    """A seeded uniform sample of at most `size` rows from rows seen a chunk at a time.

    Each row draws a random key; the sample is the `size` rows with the smallest keys
    (sampling without replacement), kept in the order they were seen.
    """

    def __init__(self, size: int, seed: int):
        self.size = int(size)
        self.rng = np.random.default_rng([seed, 0x5A3D1E])
        self.frames: list[pd.DataFrame] = []
        self.keys: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []
        self.held = 0
        self.cut = np.inf  # keys at or above this can no longer enter the sample

    def add(self, frame: pd.DataFrame, rows: np.ndarray) -> None:
        keys = self.rng.random(len(frame))
        fresh = keys < self.cut
        if not fresh.all():
            frame, rows, keys = frame.loc[fresh], rows[fresh], keys[fresh]
        self.frames.append(frame)
        self.keys.append(keys)
        self.rows.append(rows)
        self.held += len(frame)
        if self.held > 2 * self.size:
            self._trim()

    def _trim(self) -> None:
        frame = pd.concat(self.frames) if len(self.frames) > 1 else self.frames[0]
        keys, rows = np.concatenate(self.keys), np.concatenate(self.rows)
        if len(keys) > self.size:
            pick = np.sort(np.argpartition(keys, self.size - 1)[: self.size])
            frame, keys, rows = frame.iloc[pick], keys[pick], rows[pick]
            self.cut = float(keys.max())
        self.frames, self.keys, self.rows, self.held = [frame], [keys], [rows], len(keys)

    def result(self) -> tuple[pd.DataFrame, np.ndarray]:
        if not self.frames:
            return pd.DataFrame(), np.array([], dtype=np.int64)
        self._trim()
        return self.frames[0].reset_index(drop=True), self.rows[0].astype(np.int64)


class FrameRows:
    """An in-memory table (built-in data sets, 2-D `.npz`) with `TableRows`' interface."""

    def __init__(self, frame: pd.DataFrame, chunk_rows: int = CHUNK_ROWS):
        self.sample, self.chunk_rows = frame.reset_index(drop=True), chunk_rows
        self.rows = len(frame)
        self.sample_rows = np.arange(self.rows, dtype=np.int64)
        self.columns = list(frame.columns)

    def chunks(self) -> Iterator[tuple[int, pd.DataFrame]]:
        for start in range(0, self.rows, self.chunk_rows):
            yield start, self.sample.iloc[start : start + self.chunk_rows]

    def take(self, positions: np.ndarray) -> pd.DataFrame:
        return self.sample.iloc[np.asarray(positions)].reset_index(drop=True)


def table_rows(X: pd.DataFrame | TableRows) -> TableRows | FrameRows:
    """The rows of a table source, however it was read."""
    return FrameRows(X, CHUNK_ROWS) if isinstance(X, pd.DataFrame) else X
