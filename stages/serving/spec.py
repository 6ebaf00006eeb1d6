"""serving.json: what the served model knows about its input, output and candidate."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FILE = "serving.json"
FORMAT = 1


@dataclass(frozen=True)
class ServingSpec:
    """Everything the runtime needs besides the candidate's and preprocessor's files.

    `input` is "table" (raw columns), "files" (encoded images) or "arrays" (the source's
    feature shape); `prep` is schema.json's preprocessing block.
    """

    task: str  # classification | regression
    classes: list[str] | None
    input: str
    input_shape: list[int]
    prep: dict[str, Any]
    candidate: str
    kind: str  # baseline | network | compressed
    candidate_file: str
    extra_columns: str = "error"  # tables: error | ignore
    dataset: str = ""
    format: int = FORMAT
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """The training columns, in training order (tables)."""
        return list(self.prep.get("column_types", {}))

    def write(self, folder: Path) -> Path:
        path = folder / FILE
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> ServingSpec:
        raw = json.loads(Path(path).read_text())
        if raw.get("format") != FORMAT:
            raise ValueError(f"{path}: serving format {raw.get('format')!r}, expected {FORMAT}")
        return cls(**raw)


def input_kind(prep: dict[str, Any]) -> str:
    """table | files | arrays, from schema.json's preprocessing block."""
    if prep["kind"] == "table":
        return "table"
    return "files" if prep.get("input") == "files" else "arrays"
