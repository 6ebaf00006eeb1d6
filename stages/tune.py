"""tune stage: an Optuna study over the real training code, resumable, tracked in MLflow.

`python -m stages.tune` (the DVC stage) validates the search space, creates or resumes the
study, recovers trials of dead workers, runs `tune.n_workers` local workers (itself plus
subprocesses) and waits until the study holds `tune.n_trials` finished trials, then writes
`tuning/best_params.yaml` (dotted key -> value, overlaid by the train stage),
`metrics/tune.json` and the plots. `python -m stages.tune --worker` joins a running study
(another terminal, or another machine with PostgreSQL storage).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from stages import config, io
from stages.cli import parser, run_main
from stages.errors import UserError
from stages.search_space import validate_space

SECTIONS = ("seed", "model", "train", "augment", "tune")
log = logging.getLogger("reprolab.tune")


# train keys no trial depends on (fixed by the tune stage, or only about the final fit and
# its logging): changing them must not start a new study. dvc.yaml leaves them out of tune.
NOT_IN_TRIALS = (
    "max_epochs",
    "fit_on",
    "use_tuned",
    "resume",
    "log_every_n_steps",
    "log_per_step",
    "progress_bar",
)


def study_name(cfg: config.Params, experiment: str, fingerprint: str) -> str:
    """Stable across re-runs of the same search; changes when the search itself changes."""
    if cfg.tune.study_name:
        return cfg.tune.study_name
    dumped = cfg.model_dump(mode="json")
    search = {
        k: v
        for k, v in dumped["tune"].items()
        if k
        not in (
            "n_trials",
            "timeout",
            "n_workers",
            "storage",
            "study_name",
            "heartbeat_interval",
            "grace_period",
        )
    }
    blob = json.dumps(
        {
            "search": search,
            "model": dumped["model"],
            "train": {k: v for k, v in dumped["train"].items() if k not in NOT_IN_TRIALS},
            "augment": dumped["augment"],
            "seed": cfg.seed,
            "data": fingerprint,
        },
        sort_keys=True,
    )
    return f"{experiment}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def best_params(study) -> tuple[int, list[float], dict[str, Any]]:
    """Best trial; for several objectives, the Pareto trial best on the first one."""
    if len(study.directions) == 1:
        best = study.best_trial
    else:
        sign = 1 if study.directions[0].name == "MAXIMIZE" else -1
        best = max(study.best_trials, key=lambda t: sign * t.values[0])
    return best.number, list(best.values), dict(best.params)


def write_outputs(
    study, cfg: config.Params, out_dir: Path, metrics_path: Path, wall: float, metric: str
) -> dict[str, Any]:
    from stages.tuning import study as st
    from stages.tuning.plots import write_plots

    number, values, params = best_params(study)
    summary = st.trial_summary(study)
    metrics = {
        "best_value": values[0],
        "best_trial": number,
        "study": study.study_name,
        "metric": metric,
        "direction": study.directions[0].name.lower(),
        "trials": summary,
        "finished": summary.get("complete", 0) + summary.get("pruned", 0),
        "wall_seconds": round(wall, 2),
    }
    if len(values) > 1:
        metrics["best_values"] = dict(zip([metric, *cfg.tune.objectives], values, strict=True))
        metrics["pareto_front_size"] = len(study.best_trials)
    with io.atomic_file(out_dir / "best_params.yaml") as tmp:
        import yaml

        tmp.write_text(
            f"# best of study {study.study_name}, trial {number}, "
            f"{metric}={values[0]:.6g}\n" + yaml.safe_dump(params, sort_keys=True)
        )
    with io.atomic_dir(out_dir / "plots") as tmp:
        write_plots(study, tmp, multi_objective=len(values) > 1)
    io.write_json(metrics_path, metrics)
    return metrics


def write_disabled(out_dir: Path, metrics_path: Path) -> None:
    """`tune.enabled: false`: an empty overlay, so train uses params.yaml as it is."""
    with io.atomic_file(out_dir / "best_params.yaml") as tmp:
        tmp.write_text("# tune.enabled is false: nothing to overlay\n{}\n")
    with io.atomic_dir(out_dir / "plots"):
        pass
    (out_dir / "study").mkdir(parents=True, exist_ok=True)
    io.write_json(metrics_path, {"enabled": False})
    log.info("tune.enabled is false: wrote an empty %s", out_dir / "best_params.yaml")


def main(argv: list[str] | None = None) -> int:
    ap = parser("tune", "Optuna search over the training params.")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--augmented", default="data/augmented")
    ap.add_argument("--out", default="tuning", help="output folder (best params, study, plots)")
    ap.add_argument("--metrics", default="metrics/tune.json")
    ap.add_argument("--worker", action="store_true", help="join a running study as a worker")
    ap.add_argument("--study-name", default=None)
    ap.add_argument("--parent-run-id", default=None)

    def body(args):
        cfg = config.load(args.params)
        raw = config.read_yaml(Path(args.params))
        validate_space(cfg.tune.search_space, raw, args.params)
        schema_path = Path(args.prepared) / "schema.json"
        if not schema_path.exists():
            raise UserError(f"missing {schema_path}; run `dvc repro prepare` first")
        schema = json.loads(schema_path.read_text())
        if not cfg.tune.enabled and not args.worker:
            write_disabled(Path(args.out), Path(args.metrics))
            return
        from stages.tuning.session import TuneSession

        session = TuneSession(cfg, raw, schema, args)
        if args.worker:
            session.run_as_worker()
        else:
            session.run_as_stage()

    return run_main("tune", body, ap, argv)


if __name__ == "__main__":
    raise SystemExit(main())
