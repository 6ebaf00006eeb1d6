"""tune stage: an Optuna study over the real training code, resumable, tracked in MLflow.

`python -m stages.tune` (the DVC stage) validates the search space, creates or resumes the
study, recovers trials of dead workers, runs `tune.n_workers` local workers (itself plus
subprocesses) and waits until the study holds `tune.n_trials` finished trials, then writes
`tuning/best_params.yaml` (dotted key -> value, overlaid by the train stage),
`metrics/tune.json` and the plots. `python -m stages.tune --worker` joins a running study
(another terminal, or another machine with PostgreSQL storage).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from stages import config
from stages.common import io, validation
from stages.runtime.cli import parser, path_field, run_main
from stages.tune.outputs import write_disabled

log = logging.getLogger("reprolab.tune")


@dataclass(frozen=True)
class Paths:
    """Every path the stage reads or writes, as `dvc.yaml` passes them."""

    prepared: Path = path_field("prepare stage output")
    augmented: Path = path_field("augment stage output")
    out: Path = path_field("output folder (best params, study, plots)")
    metrics: Path = path_field("metrics file")


def main(argv: list[str] | None = None) -> int:
    ap = parser("tune", "Optuna search over the training params.", Paths)
    ap.add_argument("--worker", action="store_true", help="join a running study as a worker")
    ap.add_argument("--study-name", default=None)
    ap.add_argument("--parent-run-id", default=None)

    def body(args):
        # what every trial would be refused, refused once, before the first trial
        report = validation.validate(Path(args.params), Path(args.prepared), current=True)
        schema = io.read_schema(Path(args.prepared))
        for warning in report.warnings:
            log.warning(warning)
        cfg, raw = report.cfg, config.read_yaml(Path(args.params))
        if not cfg.tune.enabled and not args.worker:
            write_disabled(Path(args.out), Path(args.metrics))
            return
        from stages.tune.session import TuneSession

        session = TuneSession(cfg, raw, schema, args)
        if args.worker:
            session.run_as_worker()
        else:
            session.run_as_stage()

    with config.without_estimator_checks():  # validate and baselines check them
        return run_main("tune", body, ap, argv)
