"""The baselines' feature importances for the report: the top features of each candidate that
has a CSV in the baselines stage's importance folder (impurity for trees, sklearn's
permutation importance on val for the rest), and its figure."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def read(folder: Path, names: list[str], top: int = 5) -> tuple[dict[str, Any], list[Path]]:
    """({candidate: {"kind", "top": [[feature, value], ...]}}, figure paths), in `names`
    order (the leaderboard's); candidates without a CSV are left out."""
    out: dict[str, Any] = {}
    figures: list[Path] = []
    for name in names:
        path = Path(folder) / f"{name}.csv"
        if not path.is_file():
            continue
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))  # written sorted, largest first
        if not rows:
            continue
        out[name] = {
            "kind": rows[0]["kind"],
            "top": [[r["feature"], float(r["importance"])] for r in rows[:top]],
        }
        figure = path.with_suffix(".png")
        if figure.is_file():
            figures.append(figure)
    return out, figures


def table_rows(importances: dict[str, Any]) -> list[list[str]]:
    """[candidate, kind, "feature value, ..."] per candidate, for the report's table."""
    return [
        [name, d["kind"], ", ".join(f"{f} {v:.3g}" for f, v in d["top"])]
        for name, d in importances.items()
    ]
