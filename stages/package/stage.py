"""package stage: ship one leaderboard candidate as an MLflow model that takes raw input.

`serve.candidate` picks it (`best` = the leaderboard's winner). The stage writes
`models/serving` (an MLflow pyfunc folder, see build.py), checks that the folder, loaded
back through MLflow, answers its input example exactly as the candidate does on the
prepared rows, then registers it (registry.py: alias champion or challenger) and writes
`metrics/package.json`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages import config
from stages.common import io, splits
from stages.common.candidates import Candidate, discover
from stages.common.io import read_schema
from stages.package.result import Packaged
from stages.runtime.cli import parser, path_field, paths_from, run_main
from stages.runtime.errors import UserError
from stages.serving.spec import ServingSpec, input_kind

SECTIONS = ("seed", "serve")
log = logging.getLogger("reprolab.package")
# served model vs the candidate on prepared rows; arrays inputs undo the scaling in float32
TOLERANCE = 1e-5


@dataclass(frozen=True)
class Paths:
    """Every path the stage reads or writes, as `dvc.yaml` passes them."""

    prepared: Path = path_field("prepare stage output (schema.json, preprocessor, example)")
    baselines: Path = path_field("baselines stage output (index.json + models)")
    model: Path = path_field("the trained network")
    compressed: Path = path_field("compressed variants")
    leaderboard: Path = path_field("evaluate's leaderboard (JSON)")
    out: Path = path_field("the MLflow model folder (replaced atomically)")
    metrics: Path = path_field("what was packaged and registered (JSON)")


def choose(choice: str, board: dict[str, Any], path: Path) -> str:
    names = list(board["candidates"])
    if choice == "best":
        if not board.get("best"):
            raise UserError(f"{path}: the leaderboard has no candidates; run `dvc repro evaluate`")
        return board["best"]
    if choice not in names:
        raise UserError(
            f"serve.candidate = {choice!r} is not on the leaderboard {path}; "
            f"expected best or one of {names}"
        )
    return choice


def run(cfg: config.Params, paths: Paths) -> Packaged:
    """Write the served model folder and check it; no tracking."""
    start = time.perf_counter()
    schema = read_schema(paths.prepared)
    board = json.loads(Path(paths.leaderboard).read_text())
    name = choose(cfg.serve.candidate, board, Path(paths.leaderboard))
    found, notes = discover(
        schema["task"], paths.baselines, paths.model, paths.compressed, only=name
    )
    if not found:
        raise UserError(
            f"candidate {name!r} is on {paths.leaderboard} but its file is gone "
            f"({'; '.join(notes)}); run `dvc repro evaluate`"
        )
    candidate = found[0]
    prep = schema["preprocessing"]
    spec = ServingSpec(
        task=schema["task"],
        classes=schema.get("classes"),
        input=input_kind(prep),
        input_shape=list(schema["input_shape"]),
        prep=prep,
        candidate=name,
        kind=candidate.kind,
        candidate_file=candidate.files[0].name,
        extra_columns=cfg.serve.extra_columns,
        dataset=schema["dataset"],
        metrics={k: v for k, v in board["candidates"][name].items() if v is not None},
    )
    import mlflow

    from stages.package import build
    from stages.serving.outputs import answer

    expected = _expected(spec, candidate, Path(paths.prepared))
    output = answer(spec, *expected)
    prepared = Path(paths.prepared)
    with (
        build.model_kwargs(spec, candidate, prepared, output) as kwargs,
        io.atomic_dir(paths.out) as tmp,
    ):
        tmp.rmdir()  # MLflow writes the folder itself
        mlflow.pyfunc.save_model(str(tmp), **kwargs)
        served = mlflow.pyfunc.load_model(str(tmp)).predict(kwargs["input_example"])
        _check(served, output, tmp)
    log.info(
        "packaged %s (%s, %s) -> %s input=%s seconds=%.2f",
        name, candidate.kind, candidate.files[0].name, paths.out, spec.input,
        time.perf_counter() - start,
    )  # fmt: skip
    row = board["candidates"][name]
    return Packaged(spec, candidate, row, board["headline"], schema, Path(paths.prepared), output)


def _expected(spec: ServingSpec, candidate: Candidate, prepared: Path):
    """The candidate's answer on the prepared rows the input example was made from."""
    from stages.package import build

    if spec.input == "table":
        n = len(spec.prep["example"]["data"])
    else:
        n = 1 if spec.input == "files" else len(build.raw_example(spec, prepared))
    return candidate.predict(splits.head(prepared / "train", n))


def _check(served, expected, folder: Path) -> None:
    same_labels = list(served.columns) == list(expected.columns)
    numeric = [c for c in expected.columns if c != "label"]
    close = same_labels and np.allclose(
        served[numeric].to_numpy(), expected[numeric].to_numpy(), atol=TOLERANCE, rtol=0
    )
    if not close or ("label" in expected and (served["label"] != expected["label"]).any()):
        raise UserError(
            f"{folder}: the packaged model answers its input example differently from the "
            f"candidate on the prepared rows:\n{served}\nexpected:\n{expected}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = parser("package", "Package a leaderboard candidate as one MLflow model.", Paths)

    def body(args):
        cfg = config.load(args.params)
        paths = paths_from(args, Paths)
        schema = read_schema(paths.prepared)
        from stages.package import registry
        from stages.runtime import tracking

        with tracking.stage_run(
            "package", cfg, SECTIONS, schema=schema, inputs=[str(paths.prepared),
            str(paths.baselines), str(paths.model), str(paths.compressed)],
        ):  # fmt: skip
            packaged = run(cfg, paths)
            result = registry.publish(cfg, packaged) if cfg.serve.registry else {}
        io.write_json(
            paths.metrics,
            {
                "candidate": packaged.spec.candidate,
                "kind": packaged.spec.kind,
                "input": packaged.spec.input,
                f"test_{packaged.headline}": packaged.row.get(packaged.headline),
                **result,
            },
        )

    return run_main("package", body, ap, argv)
