"""validate stage: refuse bad params before DVC deletes any stage's outputs.

DVC removes a stage's outputs before it runs the stage's command, so a value a stage only
refuses once it runs costs that stage's previous outputs (and its uncached metrics for
good). This stage heads the graph (prepare depends on its output) and lists every params
section, so DVC runs it first whenever any of them changes: a refusal here stops
`dvc repro` / `dvc exp run` before any other stage is touched. Its output never changes,
so by itself it re-runs nothing downstream.

Checks (`stages.common.validation`): the schema, the search space (paths and every value it
can draw), and what the data (prepare's schema.json, when there is one from an earlier
run) and this machine refuse. Opens no MLflow run: it produces nothing to track.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from stages.common import io, validation
from stages.runtime.cli import parser, path_field, paths_from, run_main

log = logging.getLogger("reprolab.validate")
OK = {"valid": True}  # constant: downstream stages see an unchanged dependency


@dataclass(frozen=True)
class Paths:
    """Every path the stage reads or writes, as `dvc.yaml` passes them."""

    prepared: Path = path_field("prepare's output of an earlier run, read for its schema.json")
    out: Path = path_field("the marker other stages depend on (constant content)")


def run(params: Path, paths: Paths) -> validation.Report:
    """Validate `params`; write the constant marker. Raises ConfigError naming the key."""
    report = validation.validate(params, paths.prepared)
    for warning in report.warnings:
        log.warning(warning)
    io.write_json(paths.out, OK)
    checked = "with" if report.schema else "without (no prepared data yet)"
    log.info("params=%s valid, data combinations checked %s schema.json", params, checked)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = parser("validate", "Check every params section before any stage runs.", Paths)
    return run_main(
        "validate", lambda args: run(Path(args.params), paths_from(args, Paths)), ap, argv
    )
