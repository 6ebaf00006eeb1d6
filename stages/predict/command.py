"""`python -m stages.predict --model M --input I --out O`: batch predictions as CSV.

M is the package stage's folder (models/serving) or a registry URI (models:/<name>@champion);
I is a CSV (or `-` for stdin), an image folder or file, or a .npy/.npz array file;
O is a CSV path (written whole or not at all) or `-` for stdout. Input is read in chunks
of --rows, so memory follows the chunk, not the file; a progress bar runs in a terminal.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from stages.runtime.cli import declared_paths, run_main
from stages.runtime.errors import UserError

log = logging.getLogger("reprolab.predict")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stages.predict", description="Score new data with a packaged model."
    )
    p.add_argument(
        "--model",
        help="model folder or models:/<name>@<alias> URI (default: the package stage's --out "
        "in dvc.yaml)",
    )
    p.add_argument("--input", required=True, help="CSV, image folder/file, .npy/.npz, or -")
    p.add_argument("--out", default="-", help="CSV path for the predictions, or - (stdout)")
    p.add_argument("--rows", type=int, default=10_000, help="rows (or images) per chunk")
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI for models:/ URIs (default: $MLFLOW_TRACKING_URI, "
        "else params.yaml's mlflow.tracking_uri, else sqlite:///mlflow.db)",
    )
    p.set_defaults(path_options=())
    return p


def predict(args: argparse.Namespace) -> int:
    """Score every chunk and write the answers; returns the number of rows."""
    from stages.common.progress import bar as progress_bar
    from stages.predict import loading, reading, writing

    if args.rows < 1:
        raise UserError(f"--rows = {args.rows}; expected at least 1")
    _tracking(args)
    if args.model is None:
        args.model = declared_paths("package", ("out",), Path("dvc.yaml"))["out"]
    _, runtime = loading.load(args.model)
    spec = runtime.spec
    start, total = time.perf_counter(), 0
    bar = progress_bar(desc="predict", unit=" rows")
    with writing.output(args.out) as out, bar:
        for i, chunk in enumerate(reading.chunks(spec, args.input, args.rows)):
            answer = _score(runtime, chunk)
            answer.to_csv(out, index=False, header=i == 0, float_format="%.9g")
            total += chunk.rows
            bar.update(chunk.rows)
    seconds = time.perf_counter() - start
    log.info(
        "predicted %d rows with %s (%s) in %.2fs (%.0f rows/s) -> %s",
        total, spec.candidate, spec.kind, seconds, total / max(seconds, 1e-9), args.out,
    )  # fmt: skip
    return total


def _score(runtime, chunk):
    """The model's own predict on a chunk already cast to the training dtypes (reading.py
    did what MLflow's signature check does, naming the row; an int column with a blank
    stays legal here, where MLflow's check would refuse the float it becomes)."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    try:
        answer = runtime.predict(None, chunk.data)
    except MlflowException as exc:  # the model's own refusal (stages/serving/errors.py)
        raise UserError(f"--input: {exc.message.splitlines()[-1]}") from None
    if chunk.ids is not None:
        answer = pd.concat([chunk.ids.reset_index(drop=True), answer], axis=1)
    return answer


def _tracking(args: argparse.Namespace) -> None:
    import mlflow

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None and os.path.exists("params.yaml"):
        from stages import config
        from stages.runtime import tracking

        uri = tracking.tracking_uri(config.load("params.yaml"))
    mlflow.set_tracking_uri(uri or "sqlite:///mlflow.db")


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("predict", predict, parser(), argv)
