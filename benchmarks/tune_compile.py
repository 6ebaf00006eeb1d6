"""What a tuning trial pays for `train.compile`: the real tune stage, compile off vs a mode.

The default search (params.yaml's `tune:`: 12 trials, hyperband, width in {16, 32, 48}) runs
once per mode, each in a fresh scratch folder with its own study, MLflow store and
inductor cache (TORCHINDUCTOR_CACHE_DIR), so the first compiled trial compiles cold and
later trials find whatever the earlier ones left: kernels for the shapes they share (the
same width), nothing for a width not seen yet. Per trial: seconds (Optuna's start/complete
timestamps), width, epochs run and state; per mode: the stage's wall time.

    python benchmarks/tune_compile.py [--modes off default] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _scratch_params(work: Path, mode: str, threads: int) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"] |= {"compile": mode, "threads": threads, "progress_bar": "off"}
    raw["mlflow"] = {**(raw.get("mlflow") or {}), "tracking_uri": f"sqlite:///{work}/mlflow.db"}
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _stage(work: Path, env: dict, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", *args], cwd=work, env=env, check=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    return time.perf_counter() - start


def run_mode(mode: str, threads: int, base: Path) -> dict:
    import optuna

    work = base / mode
    work.mkdir()
    params = _scratch_params(work, mode, threads)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor"), "CI": "1"}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    p = str(params)
    _stage(work, env, "stages.prepare", "--params", p, "--out", "prepared")
    _stage(work, env, "stages.augment", "--params", p, "--prepared", "prepared", "--out", "aug")
    wall = _stage(
        work, env, "stages.tune", "--params", p, "--prepared", "prepared", "--augmented", "aug",
        "--out", "tuning", "--metrics", "tune.json",
    )  # fmt: skip
    [journal] = [f for f in (work / "tuning").rglob("*") if f.is_file() and "journal" in f.name]
    backend = optuna.storages.journal.JournalFileBackend(str(journal))
    storage = optuna.storages.JournalStorage(backend)
    [summary] = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    trials = [
        {
            "number": t.number,
            "width": t.params.get("model.width"),
            "state": t.state.name.lower(),
            "epochs": len(t.intermediate_values),
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds(),
        }
        for t in study.trials
        if t.datetime_complete
    ]
    return {"mode": mode, "wall": wall, "trials": trials}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["off", "default"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="tune-compile-") as tmp:
        results = [run_mode(mode, args.threads, Path(tmp)) for mode in args.modes]
    print("| mode | trial | width | state | epochs | seconds | width seen before |")
    print("|---|---:|---:|---|---:|---:|---|")
    for r in results:
        seen: set = set()
        for t in r["trials"]:
            again = t["width"] in seen
            seen.add(t["width"])
            print(
                f"| {r['mode']} | {t['number']} | {t['width']} | {t['state']} | {t['epochs']} "
                f"| {t['seconds']:.1f} | {'yes' if again else 'no'} |"
            )
    print()
    print("| mode | tune wall s | median s/epoch, first trial of a width | same, width seen |")
    print("|---|---:|---:|---:|")
    for r in results:
        seen, first, again = set(), [], []
        for t in r["trials"]:
            per_epoch = t["seconds"] / max(t["epochs"], 1)
            (again if t["width"] in seen else first).append(per_epoch)
            seen.add(t["width"])
        med = lambda xs: f"{statistics.median(xs):.2f}" if xs else "-"  # noqa: E731
        print(f"| {r['mode']} | {r['wall']:.1f} | {med(first)} | {med(again)} |")


if __name__ == "__main__":
    main()
