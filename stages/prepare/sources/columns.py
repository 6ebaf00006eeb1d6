"""Table columns whose meaning is ambiguous: say what is done with each, and let
`data.columns` (column -> numeric | categorical | drop) decide.

Left alone, a text column is one-hot encoded. That is right for real categories and wrong
for numbers with a stray word, dates, IDs, nested values and headers pandas renamed; each
of those gets a warning naming the column, what was done and the `data.columns` setting
that changes it.
"""

from __future__ import annotations

import difflib
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from stages.common.preprocess import as_text
from stages.runtime.errors import DataError

MOSTLY = 0.8  # share of values that makes a text column "mostly numbers" / "dates"
MIN_ROWS_FOR_ID = 20


def review(
    path: Path, frame: pd.DataFrame, kinds: dict[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """Apply `data.columns` and describe every ambiguous column left to the defaults.

    Returns: the frame to preprocess, and one note per decision (logged and kept in
    schema.json).
    """
    unknown = [c for c in kinds if c not in frame.columns]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(frame.columns), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"{path}: data.columns names {unknown} but the table has no such column{hint} "
            f"(columns: {list(frame.columns)})"
        )
    notes: list[str] = []
    out: dict[str, pd.Series] = {}
    for col in frame.columns:
        s = frame[col]
        kind = kinds.get(col)
        if kind == "drop":
            notes.append(f"column {col!r}: dropped (data.columns)")
            continue
        if kind == "numeric":
            out[col], note = _as_numbers(col, s)
            notes += [note] if note else []
            continue
        if kind == "categorical":
            out[col] = as_text(s)
            continue
        note, keep = _ambiguity(col, s, frame.columns)
        if note:
            notes.append(note)
        if keep:
            out[col] = s
    if not out:
        raise DataError(f"{path}: no feature columns left after data.columns")
    return pd.DataFrame(out, copy=False), notes


def _as_numbers(col: str, s: pd.Series) -> tuple[pd.Series, str | None]:
    numbers = pd.to_numeric(s, errors="coerce")
    lost = int((numbers.isna() & s.notna()).sum())
    if not lost:
        return numbers, None
    example = s[numbers.isna() & s.notna()].iloc[0]
    return numbers, (
        f"column {col!r}: read as numbers (data.columns); {lost} value(s) that are not "
        f"numbers (e.g. {example!r}) become missing and are imputed"
    )


def _ambiguity(col: str, s: pd.Series, columns: pd.Index) -> tuple[str | None, bool]:
    """(a warning or None, keep the column) for a column `data.columns` does not name."""
    renamed = re.fullmatch(r"(.+)\.(\d+)", col)
    if renamed and renamed.group(1) in columns:
        return (
            f"column {col!r}: the header repeats {renamed.group(1)!r}, and pandas renamed this "
            f"copy {col!r}; both are used as features (rename one, or set "
            f"data.columns.{col}: drop)",
            True,
        )
    values = s.dropna()
    if values.empty:
        return None, True
    if pd.api.types.is_integer_dtype(s) and len(values) >= MIN_ROWS_FOR_ID:
        if values.is_unique and int(values.max() - values.min()) == len(values) - 1:
            return (
                f"column {col!r}: consecutive distinct integers, like a row number or ID; "
                f"used as a number (set data.columns.{col}: drop if it is an ID)",
                True,
            )
        return None, True
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return None, True
    if pd.api.types.is_datetime64_any_dtype(s):
        return None, True
    if values.map(lambda v: isinstance(v, list | tuple | dict | set | np.ndarray)).any():
        return (
            f"column {col!r}: holds nested values (lists/structs, e.g. {values.iloc[0]!r}), "
            "which no encoder can use; dropped (flatten it into columns to use it)",
            False,
        )
    text = values.astype(str)
    numbers = pd.to_numeric(text, errors="coerce")
    share = float(numbers.notna().mean())
    if MOSTLY <= share < 1:
        odd = text[numbers.isna()]
        return (
            f"column {col!r}: {share:.0%} numbers and {len(odd)} text value(s) "
            f"(e.g. {odd.iloc[0]!r}); one-hot encoded as categories (set "
            f"data.columns.{col}: numeric to read numbers, the text becoming missing)",
            True,
        )
    if share < MOSTLY and _dates_share(text) >= MOSTLY:
        return (
            f"column {col!r}: looks like dates (e.g. {text.iloc[0]!r}); one-hot encoded as "
            f"categories, so an unseen date is unknown (convert it to numbers, or set "
            f"data.columns.{col}: drop)",
            True,
        )
    if len(values) >= MIN_ROWS_FOR_ID and text.is_unique:
        return (
            f"column {col!r}: every value is distinct (e.g. {text.iloc[0]!r}), like an ID or "
            f"free text; one-hot encoding it learns nothing about new rows (set "
            f"data.columns.{col}: drop)",
            True,
        )
    return None, True


def _dates_share(text: pd.Series) -> float:
    sample = text.iloc[:200]
    if not sample.str.contains(r"\d", regex=True).all():
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return float(parsed.notna().mean())
