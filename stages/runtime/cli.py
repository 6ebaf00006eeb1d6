"""Shared entry-point plumbing: logging set-up, argument parsing, user-facing errors."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from stages.runtime.errors import UserError
from stages.runtime.tracking import Terminated


def setup_logging(stage: str) -> logging.Logger:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {stage} %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in (
        "alembic",
        "mlflow",
        "urllib3",
        "git",
        "matplotlib",
        "PIL",
        "lightning.pytorch",
        "lightning.fabric",
        "lightning",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(f"reprolab.{stage}")


def parser(stage: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m stages.{stage}", description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def run_main(
    stage: str,
    body: Callable[[argparse.Namespace], object],
    ap: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse args and run `body`; user errors print one paragraph and exit 2, no traceback."""
    log = setup_logging(stage)
    args = ap.parse_args(argv)
    try:
        body(args)
    except UserError as exc:
        print(f"error: {stage}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted (SIGINT); MLflow run marked KILLED, outputs left untouched")
        return 130
    except Terminated:
        log.error("terminated (SIGTERM); MLflow run marked KILLED, outputs left untouched")
        return 143
    return 0
