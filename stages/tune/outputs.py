"""What the tune stage writes: the best params overlay, metrics/tune.json and the plots."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from stages import config
from stages.common import io
from stages.tune import study as st
from stages.tune.plots import write_plots

log = logging.getLogger("reprolab.tune")


def best_params(study) -> tuple[int, list[float], dict[str, Any]]:
    """Best trial; for several objectives, the Pareto trial best on the first one."""
    if len(study.directions) == 1:
        best = study.best_trial
    else:
        sign = 1 if study.directions[0].name == "MAXIMIZE" else -1
        best = max(study.best_trials, key=lambda t: sign * t.values[0])
    return best.number, list(best.values), dict(best.params)


def pareto_front(study, names: list[str]) -> list[dict[str, Any]]:
    """The study's non-dominated complete trials, best on the first objective first.

    A list, so `dvc metrics show` keeps to the numbers (it skips lists) while the file still
    holds each front trial's number, objective values, params and MLflow run.
    """
    sign = 1 if study.directions[0].name == "MAXIMIZE" else -1
    front = sorted(study.best_trials, key=lambda t: (-sign * t.values[0], t.number))
    return [
        {
            "trial": t.number,
            "values": dict(zip(names, t.values, strict=True)),
            "params": dict(t.params),
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
        }
        for t in front
    ]


def write_outputs(
    study, cfg: config.Params, out_dir: Path, metrics_path: Path, wall: float, metric: str
) -> dict[str, Any]:
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
        names = [metric, *cfg.tune.objectives]
        metrics["best_values"] = dict(zip(names, values, strict=True))
        metrics["pareto_front"] = pareto_front(study, names)
        metrics["pareto_front_size"] = len(metrics["pareto_front"])
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
