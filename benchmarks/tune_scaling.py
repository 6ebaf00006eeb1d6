"""Tuning throughput and storage overhead, on a fixed cheap objective (no training).

1. Trials per minute with 1, 2 and 4 worker processes on one study, journal file vs
   PostgreSQL (RDB storage with heartbeats, as `tune.storage: postgresql://...` uses),
   and the ratio to ideal linear scaling. The objective sleeps 200 ms (a stand-in for
   training that leaves the CPU free, so storage and sampler costs show).
2. Sampler + storage cost per trial (TPE, multivariate) as the study grows to 1000 trials:
   median ask+tell time of trials 1-100 vs 901-1000, per storage.

    .venv/bin/python benchmarks/tune_scaling.py            # journal only
    REPROLAB_POSTGRES_URL=postgresql://... .venv/bin/python benchmarks/tune_scaling.py
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages.schema.tune import TuneParams
from stages.tune import study as st

optuna.logging.set_verbosity(optuna.logging.ERROR)
SLEEP = 0.2
SPACE = {"x": {"type": "float", "low": -5, "high": 5}, "y": {"type": "float", "low": -5, "high": 5}}


def _tune(storage: str | None) -> TuneParams:
    return TuneParams.model_validate(
        {
            "search_space": {
                "train.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}
            },
            "storage": storage,
            "n_startup_trials": 10,
            "heartbeat_interval": 5,
        }
    )


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -5, 5)
    y = trial.suggest_float("y", -5, 5)
    time.sleep(SLEEP)
    return (x - 1) ** 2 + (y + 2) ** 2


def _worker(storage: str | None, journal: str, name: str, n: int, seed: int) -> None:
    study = st.open_study(_tune(storage), name, seed, Path(journal))
    study.optimize(_objective, n_trials=n)


def throughput(storage: str | None, workers: int, trials_each: int, tmp: Path) -> float:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    journal = str(tmp / f"{name}.log")
    st.open_study(_tune(storage), name, 0, Path(journal))  # create before the workers race
    procs = [
        mp.Process(target=_worker, args=(storage, journal, name, trials_each, i))
        for i in range(workers)
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return workers * trials_each / (time.perf_counter() - started) * 60


def growth(storage: str | None, tmp: Path, total: int = 1000) -> tuple[float, float]:
    name = f"growth-{uuid.uuid4().hex[:8]}"
    study = st.open_study(_tune(storage), name, 0, tmp / f"{name}.log")
    costs = []
    for _ in range(total):
        t0 = time.perf_counter()
        trial = study.ask()
        x, y = trial.suggest_float("x", -5, 5), trial.suggest_float("y", -5, 5)
        study.tell(trial, (x - 1) ** 2 + (y + 2) ** 2)
        costs.append(time.perf_counter() - t0)
    return statistics.median(costs[:100]) * 1000, statistics.median(costs[-100:]) * 1000


def main() -> None:
    pg = os.environ.get("REPROLAB_POSTGRES_URL")
    storages = {"journal": None, **({"postgresql": pg} if pg else {})}
    print(
        f"# tune scaling, {date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"objective = {SLEEP * 1000:.0f} ms sleep"
    )
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        print("| storage | workers | trials/min | vs 1 worker | ratio to linear |")
        print("|---|---:|---:|---:|---:|")
        for label, url in storages.items():
            base = None
            for workers in (1, 2, 4):
                rate = throughput(url, workers, 40, tmp)
                base = base or rate
                print(
                    f"| {label} | {workers} | {rate:.0f} | {rate / base:.2f}x | "
                    f"{rate / (base * workers):.2f} |",
                    flush=True,
                )
        print("\n| storage | ms per trial (ask+tell), trials 1-100 | trials 901-1000 |")
        print("|---|---:|---:|")
        for label, url in storages.items():
            early, late = growth(url, tmp)
            print(f"| {label} | {early:.1f} | {late:.1f} |", flush=True)


if __name__ == "__main__":
    main()
