"""What the package stage made: the registry step and metrics/package.json read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.common.candidates import Candidate
from stages.serving.spec import ServingSpec


@dataclass
class Packaged:
    spec: ServingSpec
    candidate: Candidate
    row: dict[str, Any]  # the candidate's leaderboard entry
    headline: str
    schema: dict[str, Any]
    prepared: Path
    output: Any  # the served model's answer on its input example (a DataFrame)
