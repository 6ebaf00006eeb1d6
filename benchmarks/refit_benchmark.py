"""Refit: test accuracy of the tuned network fit on train vs train + val, over seeds.

Trains the tuned params (params.yaml overlaid with a tuning result) once per seed with
`train.fit_on: train` and once with `train.fit_on: train+val`, through the real train stage
code, and scores each shipped model.pt on the test split (which neither variant sees).

    .venv/bin/python benchmarks/refit_benchmark.py [--tuned tuning/best_params.yaml]
        [--seeds 42,0,1,2,3,4,5,6]

Needs data/prepared and data/augmented (with val.npz) from `dvc repro augment`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from datetime import date
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages import config  # noqa: E402
from stages.common import splits  # noqa: E402
from stages.common.search_space import apply_overrides  # noqa: E402
from stages.train.stage import Paths, run  # noqa: E402


def count_errors(raw: dict, schema: dict, test: dict, tmp: Path) -> tuple[int, float]:
    from lightning_modules.serialization import load_network, predict

    paths = Paths.under(tmp, ROOT / "data/prepared", ROOT / "data/augmented")
    metrics = run(config.validate(raw, ROOT / "params.yaml"), schema, paths)
    net, meta = load_network(paths.model)
    wrong = int((predict(net, meta, test["X"]).argmax(1) != test["y"]).sum())
    return wrong, metrics["wall_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tuned", default="tuning/best_params.yaml", help="dotted overrides file")
    ap.add_argument("--seeds", default="42,0,1,2,3,4,5,6")
    args = ap.parse_args()
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    tuned = yaml.safe_load((ROOT / args.tuned).read_text()) if args.tuned else {}
    base = apply_overrides(base, {**tuned, "train.use_tuned": False, "train.progress_bar": "off"})
    schema = json.loads((ROOT / "data/prepared/schema.json").read_text())
    test = splits.load(ROOT / "data/prepared/test", "X", "y")
    n_test = len(test["y"])
    seeds = [int(s) for s in args.seeds.split(",")]
    errors: dict[str, list[int]] = {"train": [], "train+val": []}
    walls: dict[str, list[float]] = {"train": [], "train+val": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for fit_on in errors:
                raw = apply_overrides(base, {"seed": seed, "train.fit_on": fit_on})
                wrong, wall = count_errors(raw, schema, test, Path(tmp) / f"{fit_on}-{seed}")
                errors[fit_on].append(wrong)
                walls[fit_on].append(wall)
                print(
                    f"seed={seed} fit_on={fit_on}: {wrong} of {n_test} test rows wrong "
                    f"(acc {1 - wrong / n_test:.4f}), fit {wall:.1f} s",
                    flush=True,
                )
    print(
        f"\n# refit benchmark, {date.today()}, {platform.machine()}, {os.cpu_count()} cores; "
        f"tuned params {args.tuned}: {tuned}"
    )
    print(
        "| fit_on | test rows wrong per seed | mean wrong | mean test acc | min acc "
        "| median fit s |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for fit_on, wrong in errors.items():
        accs = [1 - w / n_test for w in wrong]
        print(
            f"| {fit_on} | {' '.join(map(str, wrong))} | {statistics.mean(wrong):.2f} "
            f"| {statistics.mean(accs):.4f} | {min(accs):.4f} "
            f"| {statistics.median(walls[fit_on]):.1f} |"
        )


if __name__ == "__main__":
    main()
