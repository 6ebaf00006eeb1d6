"""Load test: many local tune workers on the default storage (journal file + sqlite MLflow).

Runs the real `python -m stages.tune` with `tune.n_workers` local workers (itself plus
subprocesses) on tiny synthetic data until the study holds `--trials` finished trials, then
checks what must hold under contention:

- no "database is locked" (or any traceback) in any worker's output;
- exactly `--trials` finished (COMPLETE + PRUNED) trials in the study, none RUNNING;
- one FINISHED MLflow trial run per finished trial, nested under the stage's run(s).

    .venv/bin/python benchmarks/tune_load.py [--workers 8] [--trials 200]

Prints one Markdown row for benchmarks/RESULTS.md and docs/reliability.md; exits 1 when a
check fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import run_stage  # noqa: E402

PARAMS = {
    "data": {
        "source": "synthetic",
        "synthetic": {"n_samples": 300, "n_features": 8, "n_informative": 5, "n_classes": 3},
    },
    "augment": {"enabled": False},
    "model": {"arch": "mlp", "width": 8, "depth": 1},
    "train": {"batch_size": 128, "threads": 1, "scheduler": {"name": "none"}},
    "tune": {
        "max_epochs": 1,
        "n_startup_trials": 10,
        "pruner": "none",
        "search_space": {
            "train.optimizer.lr": {"type": "float", "low": 0.001, "high": 0.05, "log": True},
            "model.width": {"type": "categorical", "choices": [8, 12, 16]},
        },
    },
    "mlflow": {"experiment": "load"},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--trials", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raw = PARAMS | {"tune": PARAMS["tune"] | {"n_trials": a.trials, "n_workers": a.workers}}
        (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        shutil.copy(REPO / "dvc.yaml", work)  # a project root: stages read their paths from it
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "CI": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        }
        for cmd in (["prepare"], ["augment"]):
            subprocess.run(
                [sys.executable, "-m", f"stages.{cmd[0]}"],
                cwd=work,
                env=env,
                check=True,
                capture_output=True,
            )
        started = time.perf_counter()
        res = run_stage("tune", work, env)
        wall = time.perf_counter() - started
        out = res.stdout + res.stderr
        problems = []
        if res.returncode != 0:
            problems.append(f"tune exited {res.returncode}: {out[-2000:]}")
        for needle in ("database is locked", "Traceback"):
            if needle in out:
                problems.append(f"{needle!r} in the workers' output")
        import mlflow
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(work / "tuning/study/journal.log")))
        (summary,) = optuna.get_all_study_summaries(storage)
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
        states: dict[str, int] = {}
        for t in trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        finished = states.get("COMPLETE", 0) + states.get("PRUNED", 0)
        if finished != a.trials or states.get("RUNNING"):
            problems.append(f"study holds {states}, expected {a.trials} finished, none RUNNING")
        client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
        exp = client.get_experiment_by_name("load")
        runs = client.search_runs([exp.experiment_id], max_results=5000)
        trial_runs = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        ok_runs = [r for r in trial_runs if r.info.status == "FINISHED"]
        if len(ok_runs) < finished:
            problems.append(f"{len(ok_runs)} FINISHED trial runs for {finished} finished trials")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"| {when} | {a.workers} workers, journal + sqlite MLflow | {a.trials} target | "
        f"{states} | {len(trial_runs)} trial runs ({len(ok_runs)} FINISHED) | "
        f"{wall:.0f} s ({finished / wall * 60:.0f} trials/min) | "
        f"{'OK' if not problems else 'FAILED'} |"
    )
    for p in problems:
        print(f"  problem: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
