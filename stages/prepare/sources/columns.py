"""Table columns whose meaning is ambiguous: say what is done with each, and let
`data.columns` (column -> numeric | categorical | drop) decide.

Left alone, a text column is one-hot encoded. That is right for real categories and wrong
for numbers with a stray word, dates, IDs, nested values and headers pandas renamed; each
of those gets a warning naming the column, what was done and the `data.columns` setting
that changes it.

The table is read a chunk at a time (stages.prepare.sources.table_scan), so each column is
judged from what was counted over every row (`ColumnScan`: missing values, values that are
not numbers, integer range, the first values) and, for "every value is distinct", from
the seeded row sample prepare fits on (all rows when the table is within
`data.sample_rows`). `review` turns that into one decision per column, which `apply`
carries out on each chunk the same way.
"""

from __future__ import annotations

import difflib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from stages.common.preprocess import as_text
from stages.runtime.errors import DataError

MOSTLY = 0.8  # share of values that makes a text column "mostly numbers" / "dates"
MIN_ROWS_FOR_ID = 20
DATE_PROBE = 200  # first values of a text column tried as dates
Decision = Literal["keep", "numeric", "text", "drop"]


@dataclass
class ColumnScan:
    """What the review needs to know about one column, counted chunk by chunk."""

    name: str
    notna: int = 0
    integer: bool = True  # every chunk read it as integers
    numeric: bool = True  # every chunk read it as numbers / bools / datetimes
    int_min: int | None = None
    int_max: int | None = None
    text_numbers: int = 0  # text columns: values that parse as numbers
    first: Any = None  # first value present, as read
    first_odd: Any = None  # text columns: first value that is not a number
    nested: bool = False
    probe: list[str] = field(default_factory=list)  # first DATE_PROBE values as text
    inf_row: int | None = None  # first data row with an infinite number
    text_inf_row: int | None = None  # text columns: first value reading as +-inf ("inf")

    def add(self, s: pd.Series, file_rows: np.ndarray) -> None:
        """Count one chunk's values (`file_rows`: each one's 0-based data row in the file)."""
        present = s.notna().to_numpy()
        values = s[present]
        if values.empty:
            return
        rows = file_rows[present]
        if self.first is None:
            self.first = values.iloc[0]
        self.notna += len(values)
        if pd.api.types.is_integer_dtype(s):
            lo, hi = int(values.min()), int(values.max())
            self.int_min = lo if self.int_min is None else min(self.int_min, lo)
            self.int_max = hi if self.int_max is None else max(self.int_max, hi)
            return
        self.integer = False
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_datetime64_any_dtype(s):
            return
        if pd.api.types.is_numeric_dtype(s):
            self._note_infinite(values.to_numpy(dtype=np.float64), rows, text=False)
            return
        self.numeric = False
        if pd.api.types.is_object_dtype(s) and not self.nested:  # str dtypes hold only text
            self.nested = bool(values.map(_is_nested).any())
        text = values.astype(str)
        codes, distinct = pd.factorize(text)  # each distinct value parsed once
        parsed = pd.to_numeric(pd.Series(distinct, dtype=object), errors="coerce")
        numbers = pd.Series(parsed.to_numpy(dtype=np.float64, na_value=np.nan)[codes])
        ok = numbers.notna().to_numpy()
        self.text_numbers += int(ok.sum())
        if self.first_odd is None and not ok.all():
            self.first_odd = text[~ok].iloc[0]
        if len(self.probe) < DATE_PROBE:
            self.probe += text.iloc[: DATE_PROBE - len(self.probe)].tolist()
        self._note_infinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan), rows, True)

    def _note_infinite(self, numbers: np.ndarray, rows: np.ndarray, text: bool) -> None:
        if (self.text_inf_row if text else self.inf_row) is not None:
            return
        bad = np.isinf(numbers)
        if bad.any():
            row = int(rows[np.argmax(bad)])
            if text:
                self.text_inf_row = row
            else:
                self.inf_row = row

    def infinite_row(self, decision: Decision) -> int | None:
        """The first data row holding an infinite number, as the column will be read."""
        if decision == "numeric":
            rows = [r for r in (self.inf_row, self.text_inf_row) if r is not None]
            return min(rows) if rows else None
        return self.inf_row if decision == "keep" else None

    @property
    def lost_numbers(self) -> int:
        """Values present that `data.columns: numeric` turns into missing ones."""
        return 0 if self.numeric else self.notna - self.text_numbers


def review(
    path: Path, scans: dict[str, ColumnScan], sample: pd.DataFrame, kinds: dict[str, str]
) -> tuple[dict[str, Decision], list[str]]:
    """Apply `data.columns` and describe every ambiguous column left to the defaults.

    Args:
        scans: per feature column, its counts over every row.
        sample: the seeded row sample (for distinctness), the raw columns as read.
        kinds: `data.columns`.

    Returns: a decision per column (in the table's order), and one note per decision
    (logged and kept in schema.json).
    """
    columns = list(scans)
    unknown = [c for c in kinds if c not in scans]
    if unknown:
        close = difflib.get_close_matches(unknown[0], columns, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"{path}: data.columns names {unknown} but the table has no such column{hint} "
            f"(columns: {columns})"
        )
    notes: list[str] = []
    decisions: dict[str, Decision] = {}
    for col, scan in scans.items():
        kind = kinds.get(col)
        if kind == "drop":
            notes.append(f"column {col!r}: dropped (data.columns)")
            decisions[col] = "drop"
            continue
        if kind == "numeric":
            decisions[col] = "numeric"
            if scan.lost_numbers:
                notes.append(
                    f"column {col!r}: read as numbers (data.columns); {scan.lost_numbers} "
                    f"value(s) that are not numbers (e.g. {scan.first_odd!r}) become missing "
                    "and are imputed"
                )
            continue
        if kind == "categorical":
            decisions[col] = "text"
            continue
        note, keep = _ambiguity(col, scan, sample[col], columns)
        if note:
            notes.append(note)
        decisions[col] = "keep" if keep else "drop"
    if all(d == "drop" for d in decisions.values()):
        raise DataError(f"{path}: no feature columns left after data.columns")
    return decisions, notes


def refuse_infinite(
    path: Path, scans: dict[str, ColumnScan], decisions: dict[str, Decision]
) -> None:
    """Refuse the first infinite number a kept column would feed the model, by line."""
    found = [
        (row, col)
        for col, scan in scans.items()
        if (row := scan.infinite_row(decisions[col])) is not None
    ]
    if found:
        row, col = min(found, key=lambda f: (f[0], list(scans).index(f[1])))
        raise DataError(
            f"{path}: infinite value in column {col!r} at data row {row + 1} "
            f"(file line {row + 2}); expected finite numbers or blanks"
        )


def apply(frame: pd.DataFrame, decisions: dict[str, Decision]) -> pd.DataFrame:
    """The columns to preprocess, as `review` decided: the same for every chunk."""
    out: dict[str, pd.Series] = {}
    for col, decision in decisions.items():
        if decision == "drop":
            continue
        s = frame[col]
        if decision == "numeric":
            s = pd.to_numeric(s, errors="coerce")
        elif decision == "text":
            s = as_text(s)
        out[col] = s
    return pd.DataFrame(out, copy=False)


def _ambiguity(
    col: str, scan: ColumnScan, sample: pd.Series, columns: list[str]
) -> tuple[str | None, bool]:
    """(a warning or None, keep the column) for a column `data.columns` does not name."""
    renamed = re.fullmatch(r"(.+)\.(\d+)", col)
    if renamed and renamed.group(1) in columns:
        return (
            f"column {col!r}: the header repeats {renamed.group(1)!r}, and pandas renamed this "
            f"copy {col!r}; both are used as features (rename one, or set "
            f"data.columns.{col}: drop)",
            True,
        )
    if not scan.notna:
        return None, True
    if scan.integer and scan.notna >= MIN_ROWS_FOR_ID:
        spread = scan.int_max - scan.int_min
        if spread == scan.notna - 1 and sample.dropna().is_unique:
            return (
                f"column {col!r}: consecutive distinct integers, like a row number or ID; "
                f"used as a number (set data.columns.{col}: drop if it is an ID)",
                True,
            )
        return None, True
    if scan.numeric:
        return None, True
    if scan.nested:
        return (
            f"column {col!r}: holds nested values (lists/structs, e.g. {scan.first!r}), "
            "which no encoder can use; dropped (flatten it into columns to use it)",
            False,
        )
    share = scan.text_numbers / scan.notna
    if MOSTLY <= share < 1:
        return (
            f"column {col!r}: {share:.0%} numbers and {scan.notna - scan.text_numbers} text "
            f"value(s) (e.g. {scan.first_odd!r}); one-hot encoded as categories (set "
            f"data.columns.{col}: numeric to read numbers, the text becoming missing)",
            True,
        )
    first = str(scan.first)
    if share < MOSTLY and _dates_share(pd.Series(scan.probe, dtype=object)) >= MOSTLY:
        return (
            f"column {col!r}: looks like dates (e.g. {first!r}); one-hot encoded as "
            f"categories, so an unseen date is unknown (convert it to numbers, or set "
            f"data.columns.{col}: drop)",
            True,
        )
    if scan.notna >= MIN_ROWS_FOR_ID and sample.dropna().astype(str).is_unique:
        return (
            f"column {col!r}: every value is distinct (e.g. {first!r}), like an ID or "
            f"free text; one-hot encoding it learns nothing about new rows (set "
            f"data.columns.{col}: drop)",
            True,
        )
    return None, True


def _is_nested(value: object) -> bool:
    return isinstance(value, list | tuple | dict | set | np.ndarray)


def _dates_share(text: pd.Series) -> float:
    if text.empty or not text.str.contains(r"\d", regex=True).all():
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    return float(parsed.notna().mean())
