"""Rows of docs/reliability.md, recorded by the fault, load and bad-input tests themselves.

A test asks for the `reliability` fixture and, after its assertions passed, records what it
injected, what happened and the counts it measured before and after:

    reliability.record(
        "fault", "kill -9 inside each stage", "pipeline completes; dvc.lock valid",
        before={"stages locked": 0}, after={"stages locked": 7, "RUNNING runs": 0},
    )

A row exists only for a check that passed (record comes after the asserts). At the end of
the session (under pytest-xdist: the controller's, with every worker's rows) the rows go
to `$REPROLAB_RELIABILITY_DIR` (default `tests/out/`) as
`reliability.json`; `scripts/reliability_doc.py` renders them into docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("fault", "load", "bad input", "security")
ROWS: list[Row] = []


@dataclass
class Row:
    kind: str
    injected: str
    outcome: str
    before: dict[str, Any]
    after: dict[str, Any]
    test: str
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Recorder:
    """Bound to one test (its node id and start time)."""

    def __init__(self, nodeid: str):
        self.nodeid = nodeid
        self.started = time.perf_counter()

    def record(
        self,
        kind: str,
        injected: str,
        outcome: str,
        *,
        before: dict[str, Any],
        after: dict[str, Any],
        **extra: Any,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"reliability row kind {kind!r}: expected one of {KINDS}")
        seconds = round(time.perf_counter() - self.started, 1)
        ROWS.append(Row(kind, injected, outcome, before, after, self.nodeid, seconds, extra))


def dump() -> str:
    """This process's rows as JSON (an xdist worker hands them to the controller)."""
    return json.dumps([asdict(r) for r in ROWS], default=str)


def extend(dumped: str) -> None:
    """Add the rows a worker dumped."""
    ROWS.extend(Row(**row) for row in json.loads(dumped))


def write(out_dir: Path) -> Path | None:
    """reliability.json with every row of this session; None when no row was recorded."""
    if not ROWS:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "reliability.json"
    doc = {
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "python": platform.python_version(),
        # by test, whichever worker ran it: the same suite gives the same document
        "rows": [asdict(r) for r in sorted(ROWS, key=lambda r: r.test)],
    }
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path
