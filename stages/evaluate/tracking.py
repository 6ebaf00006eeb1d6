"""What baselines and evaluate send to MLflow beyond the stage run itself.

baselines: one nested run per model (params, val metrics, the model with its signature).
evaluate: metrics, figures and report as artifacts, best-run tags (the package stage
registers the served model).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from stages import config

log = logging.getLogger("reprolab.evaluate")


def log_evaluation(
    cfg: config.Params,
    summary: dict[str, Any],
    schema: dict[str, Any],
    metrics_path: str | Path,
    plots_dir: str | Path,
    reports_dir: str | Path,
) -> None:
    """Log the active evaluate run and tag/register the winners.

    Args:
        cfg: validated params.
        summary: what `stages.evaluate.run` returned.
        schema: data/prepared/schema.json (dataset name for the registry).
        metrics_path, plots_dir, reports_dir: the stage's outputs, logged as artifacts.
    """
    import mlflow

    board = summary["leaderboard"]
    headline, best = board["headline"], board["best"]
    metrics = {
        f"{name}.{key}": float(value)
        for name, row in board["candidates"].items()
        for key, value in row.items()
        if isinstance(value, int | float) and value is not None and np.isfinite(value)
    }
    metrics[f"best.{headline}"] = board["candidates"][best][headline]
    mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
    mlflow.set_tags({"best_candidate": best, "headline": headline})
    mlflow.log_artifact(str(metrics_path))
    mlflow.log_artifacts(str(plots_dir), "plots")
    mlflow.log_artifacts(str(reports_dir), "reports")
    _tag_candidate_runs(summary)


def _tag_candidate_runs(summary: dict[str, Any]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    board = summary["leaderboard"]
    for name, row in board["candidates"].items():
        run_id = summary["run_ids"].get(name)
        if not run_id:
            continue
        client.set_tag(run_id, "leaderboard_rank", str(row["rank"]))
        client.set_tag(run_id, "best_model", str(name == board["best"]).lower())
        client.set_tag(run_id, "pareto_front", str(bool(row.get("pareto"))).lower())
    best_run = summary["run_ids"].get(board["best"])
    if best_run:
        log.info("tagged best model's run %s (%s)", best_run, board["best"])
