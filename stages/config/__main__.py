"""`python -m stages.config [params.yaml]`: validate everything and print the resolved params.

Runs the checks every stage runs before its work (`stages.common.validation`): the schema,
the search space, and what the data (prepare's schema.json, where `dvc.yaml` puts it, once
prepare has run) and this machine refuse.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from stages.common import validation
from stages.config import DEFAULT_PATH
from stages.runtime.cli import declared_paths
from stages.runtime.errors import UserError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else DEFAULT_PATH
    dvc_yaml = path.parent / "dvc.yaml"
    try:
        prepared = None
        if dvc_yaml.exists():
            found = declared_paths("train", ["prepared"], dvc_yaml).get("prepared")
            prepared = path.parent / found if found else None
        report = validation.validate(path, prepared)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(report.cfg.model_dump(mode="json"), sort_keys=False), end="")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    data = (
        "checked against " + str(prepared)
        if report.schema
        else "not checked (no prepared data yet)"
    )
    print(f"# {path}: valid; data combinations {data}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
