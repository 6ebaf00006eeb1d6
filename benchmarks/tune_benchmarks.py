"""Tune stage figures, each measured by running the real stage (`python -m stages.tune`).

1. Sample efficiency: TPE vs random, same trial budget, on the default search space,
   over several seeds; the median best val metric of each.
2. Pruning savings: hyperband vs no pruning at the same number of trials: total training
   epochs and best val metric.
3. Framework overhead per trial: trial wall time minus the time inside train/val loops
   (the per-epoch train_seconds + val_seconds each trial logs to MLflow), as a share.

    .venv/bin/python benchmarks/tune_benchmarks.py [--seeds 5] [--trials 10] [--epochs 3]

Prepared/augmented digits are made once; each study runs in a fresh folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def run_study(
    work: Path,
    data: Path,
    seed: int,
    sampler: str,
    pruner: str,
    trials: int,
    epochs: int,
    metric: str | None = None,
    overrides: dict[str, str] | None = None,
) -> dict:
    case = work / f"{sampler}-{pruner}-{seed}"
    case.mkdir()
    for name in ("prepared", "augmented"):
        shutil.copytree(data / name, case / "data" / name)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["seed"] = seed
    raw["tune"].update(sampler=sampler, pruner=pruner, n_trials=trials, max_epochs=epochs)
    if metric:
        raw["tune"]["metric"] = metric
    for key, value in (overrides or {}).items():
        section, name = key.split(".", 1)
        raw[section][name] = yaml.safe_load(value)
    raw["mlflow"]["experiment"] = "bench"
    (case / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CI": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{case / 'mlflow.db'}",
    }
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "stages.tune"],
        cwd=case,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    metrics = json.loads((case / "metrics/tune.json").read_text())
    return {"best": metrics["best_value"], "wall": wall, **_trial_costs(case, env)}


def _trial_costs(case: Path, env: dict) -> dict:
    import mlflow
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(case / "tuning/study/journal.log")))
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    best_run = study.best_trial.user_attrs["mlflow_run_id"]
    best_acc = max(m.value for m in client.get_metric_history(best_run, "val/acc"))
    epochs, inside, total = 0, 0.0, 0.0
    for t in study.get_trials():
        if t.datetime_complete is None or "mlflow_run_id" not in t.user_attrs:
            continue
        run = t.user_attrs["mlflow_run_id"]
        train = client.get_metric_history(run, "train_seconds")
        val = client.get_metric_history(run, "val_seconds")
        epochs += len(train)
        inside += sum(m.value for m in train) + sum(m.value for m in val)
        total += (t.datetime_complete - t.datetime_start).total_seconds()
    return {
        "epochs": epochs,
        "loop_seconds": inside,
        "trial_seconds": total,
        "best_acc": best_acc,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--metric", default=None, help="tune.metric (default: params.yaml's)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a params.yaml value in every study, e.g. tune.reduction_factor=4",
    )
    ap.add_argument(
        "--configs",
        default="tpe/none,random/none,tpe/hyperband",
        help="comma-separated sampler/pruner pairs to run",
    )
    args = ap.parse_args()
    configs = [tuple(c.split("/")) for c in args.configs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'prep.db'}",
        }
        for cmd in (
            ["prepare", "--out", str(data / "prepared")],
            ["augment", "--prepared", str(data / "prepared"), "--out", str(data / "augmented")],
        ):
            subprocess.run(
                [sys.executable, "-m", f"stages.{cmd[0]}", *cmd[1:]],
                cwd=REPO,
                env=env,
                check=True,
                capture_output=True,
            )
        results: dict[str, list[dict]] = {}
        for seed in range(args.seeds):
            for sampler, pruner in configs:
                overrides = dict(item.split("=", 1) for item in args.set)
                r = run_study(
                    work,
                    data,
                    seed,
                    sampler,
                    pruner,
                    args.trials,
                    args.epochs,
                    args.metric,
                    overrides,
                )
                results.setdefault(f"{sampler}/{pruner}", []).append(r)
                print(
                    f"seed={seed} {sampler}/{pruner}: best={r['best']:.4f} "
                    f"best_trial_val_acc={r['best_acc']:.4f} "
                    f"epochs={r['epochs']} wall={r['wall']:.0f}s",
                    flush=True,
                )
    report(results, args)


def report(results: dict[str, list[dict]], args) -> None:
    print(
        f"\n# tune benchmarks, {date.today()}, {platform.machine()}, {os.cpu_count()} cores; "
        f"digits, default search space, {args.trials} trials x {args.epochs} epochs, "
        f"{args.seeds} seeds"
    )
    metric = args.metric or "tune.metric"
    print(
        f"| sampler/pruner | median best ({metric}) | min..max | median best trial's val/acc "
        "| total epochs (sum) | wall s (sum) | overhead share of trial time |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, rows in results.items():
        bests = [r["best"] for r in rows]
        trial_s = sum(r["trial_seconds"] for r in rows)
        overhead = 1 - sum(r["loop_seconds"] for r in rows) / trial_s
        print(
            f"| {key} | {statistics.median(bests):.4f} | {min(bests):.4f}..{max(bests):.4f} "
            f"| {statistics.median(r['best_acc'] for r in rows):.4f} "
            f"| {sum(r['epochs'] for r in rows)} | {sum(r['wall'] for r in rows):.0f} | "
            f"{overhead:.1%} |"
        )
    if not {"tpe/none", "tpe/hyperband"} <= set(results):
        return
    none, hb = results["tpe/none"], results["tpe/hyperband"]
    saved = 1 - sum(r["epochs"] for r in hb) / sum(r["epochs"] for r in none)
    delta = statistics.median(r["best"] for r in hb) - statistics.median(r["best"] for r in none)
    acc = statistics.median(r["best_acc"] for r in hb) - statistics.median(
        r["best_acc"] for r in none
    )
    print(
        f"\nhyperband vs none: {saved:.0%} fewer epochs, median best {metric} {delta:+.4f}, "
        f"median best trial's val/acc {acc * 100:+.2f} pt"
    )


if __name__ == "__main__":
    main()
