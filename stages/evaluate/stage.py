"""evaluate stage: score every candidate on the untouched test split, with CIs, cost and plots.

Candidates: each baseline, the trained network and each compressed variant whose files
exist (missing ones are skipped with a note). One metric code path scores them all; a
seeded bootstrap gives the headline's CI and the paired difference of the top candidate
against each other; latency and size are measured the same way for all. Writes the
leaderboard (a dvc metrics file), plots (dvc plots data + PNGs) and reports/report.{md,html}.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages import config
from stages.common import io, latency, splits
from stages.common.candidates import Candidate, discover
from stages.common.io import read_schema
from stages.common.scores import TASK_HEADLINES, default_headline, score
from stages.common.sizes import bytes_on_disk
from stages.evaluate import bootstrap, importance, leaderboard, report
from stages.evaluate import plots as plots_evaluate
from stages.runtime.cli import parser, path_field, paths_from, run_main
from stages.runtime.errors import UserError

SECTIONS = ("seed", "evaluate")
log = logging.getLogger("reprolab.evaluate")


@dataclass(frozen=True)
class Paths:
    """Every path the stage reads or writes, as `dvc.yaml` passes them."""

    prepared: Path = path_field("prepare stage output (test split + schema.json)")
    baselines: Path = path_field("baselines stage output (index.json + models)")
    model: Path = path_field("the trained network (skipped with a note if missing)")
    compressed: Path = path_field("compressed variants (skipped with a note if missing)")
    metrics: Path = path_field("the leaderboard (JSON)")
    plots: Path = path_field("plots folder (replaced atomically)")
    reports: Path = path_field("report.md + report.html folder (replaced atomically)")
    importance: Path = path_field("baselines' feature importances (CSV + PNG; may be missing)")


def run(
    cfg: config.Params, paths: Paths, tracking_info: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Score, compare and report every available candidate.

    Args:
        cfg: validated params (reads `seed` and `evaluate`).
        paths: inputs and outputs (see `Paths`).
        tracking_info: MLflow tracking URI and evaluate run id, shown in the report.

    Returns:
        The evaluation summary (leaderboard, comparisons, notes, per-class detail).
    """
    start = time.perf_counter()
    prepared, baselines_dir, model_path = paths.prepared, paths.baselines, paths.model
    compressed_dir, metrics_path = paths.compressed, paths.metrics
    plots_dir, reports_dir = paths.plots, paths.reports
    schema = read_schema(prepared)
    task, classes, ev = schema["task"], schema.get("classes"), cfg.evaluate
    headline = _headline(ev.headline, task)
    # X is read and scaled SCORE_BATCH rows at a time: the test split is never whole in memory
    X, y = splits.Scaled(prepared / "test"), splits.load(prepared / "test", "y")["y"]
    candidates, notes = discover(task, Path(baselines_dir), Path(model_path), Path(compressed_dir))
    for note in notes:
        log.info("note: %s", note)
    if not candidates:
        raise UserError(
            f"nothing to evaluate: no baselines in {baselines_dir}, no network at {model_path}, "
            f"no compressed models in {compressed_dir}; run `dvc repro baselines` first"
        )
    scores, preds, detail, cis = {}, {}, {}, {}
    for c in candidates:
        scores[c.name], preds[c.name], detail[c.name] = _score_one(c, task, X, y, classes, cfg)
        cis[c.name] = bootstrap.confidence_interval(
            headline, y, preds[c.name][0], ev.bootstrap, cfg.seed, ev.confidence, len(classes or [])
            or None
        )  # fmt: skip
        log.info(
            "candidate=%s kind=%s test_%s=%.4f [%.4f, %.4f] b1=%.3fms",
            c.name, c.kind, headline, scores[c.name][headline] or float("nan"), *cis[c.name],
            scores[c.name]["latency_ms_b1"],
        )  # fmt: skip
    order = leaderboard.ranked(scores, headline)
    comparisons = leaderboard.compare(
        order[0], order[1:], y, {n: p[0] for n, p in preds.items()}, headline,
        ev.bootstrap, cfg.seed, ev.confidence, len(classes) if classes else None,
    )  # fmt: skip
    board = leaderboard.leaderboard_json(task, headline, order, scores, cis, ev.confidence)
    io.write_json(metrics_path, board)
    with io.atomic_dir(plots_dir) as tmp:
        images = plots_evaluate.write_all(
            tmp, task, y, preds, order[0], classes, board["candidates"], headline,
            bins=ev.calibration_bins,
        )  # fmt: skip
    images = [Path(plots_dir) / p.name for p in images]
    importances, importance_figures = importance.read(Path(paths.importance), order)
    by_name = {c.name: c for c in candidates}
    summary = {
        "headline": headline,
        "confidence": ev.confidence,
        "leaderboard": board,
        "comparisons": comparisons,
        "notes": notes,
        "kinds": {n: by_name[n].kind for n in order},
        "run_ids": {n: by_name[n].run_id for n in order},
        "per_class": {n: d for n, d in detail.items() if d},
        "importance": importances,
        "schema": schema,
        "params": {
            **config.section_dict(cfg, *SECTIONS),
            "candidates": {n: by_name[n].params for n in order},
        },
        **(tracking_info or {}),
    }
    with io.atomic_dir(reports_dir) as tmp:
        report.write(tmp, summary, images, importance_figures)
        io.write_json(tmp / "evaluation.json", {k: v for k, v in summary.items() if k != "schema"})
    for c in comparisons:
        log.info("%s", c["text"])
    log.info(
        "best=%s candidates=%d seconds=%.2f", order[0], len(order), time.perf_counter() - start
    )
    summary["images"] = images
    return summary


def _headline(choice: str, task: str) -> str:
    if choice == "auto":
        return default_headline(task)
    if choice not in TASK_HEADLINES[task]:
        raise UserError(
            f"evaluate.headline = {choice!r} does not apply to a {task} task; "
            f"allowed: auto, {', '.join(TASK_HEADLINES[task])}"
        )
    return choice


# test rows per predict call: a network's activations (and a baseline's intermediate
# arrays) follow the batch, not the split, so scoring a large test split stays flat
SCORE_BATCH = 4096


def _predict_in_batches(predict, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """`predict` over X in SCORE_BATCH-row slices, the answers concatenated in row order."""
    preds, probas = [], []
    for start in range(0, len(X), SCORE_BATCH):
        pred, proba = predict(X[start : start + SCORE_BATCH])
        preds.append(np.asarray(pred))
        probas.append(proba)
    has_proba = all(p is not None for p in probas)
    return np.concatenate(preds), (np.concatenate(probas) if has_proba else None)


def _score_one(c: Candidate, task, X, y, classes, cfg) -> tuple[dict, tuple, dict]:
    ev = cfg.evaluate
    with latency.limited_threads(ev.threads):
        pred, proba = _predict_in_batches(c.predict, X)
    metrics = score(task, y, pred, proba, classes, ev.calibration_bins)
    per_class = metrics.pop("per_class", None)
    metrics.update(
        latency.measure(c.predict, X, ev.latency_repeats, ev.latency_budget_s, ev.threads)
    )
    metrics["n_params"] = int(c.n_params)
    metrics["bytes"] = bytes_on_disk(c.files)
    return metrics, (np.asarray(pred), proba), per_class


def main(argv: list[str] | None = None) -> int:
    ap = parser(
        "evaluate", "Score every candidate on the test split; leaderboard and report.", Paths
    )

    def body(args):
        cfg = config.load(args.params)
        schema = read_schema(Path(args.prepared))
        from stages.evaluate.tracking import log_evaluation
        from stages.runtime import tracking, tracking_inputs

        with tracking.stage_run(
            "evaluate",
            cfg,
            SECTIONS,
            schema=schema,
            inputs=[args.prepared, args.baselines, args.model, args.compressed],
        ) as active:
            test = Path(args.prepared) / "test"
            tracking_inputs.log_splits(schema["dataset"], {"test": [test]})
            info = {
                "tracking_uri": tracking.tracking_uri(cfg),
                "evaluate_run_id": active.info.run_id,
            }
            summary = run(cfg, paths_from(args, Paths), info)
            log_evaluation(cfg, summary, schema, args.metrics, args.plots, args.reports)

    return run_main("evaluate", body, ap, argv)
