"""Baselines on digits, breast_cancer and diabetes: stage wall time and test metrics with CIs.

For each dataset, in a scratch folder: prepare (in-process), then the real
`python -m stages.baselines` command that `dvc repro` runs (timed from outside, MLflow into
a scratch sqlite store, shipped params.yaml with only `data.source` changed), then evaluate's
`run` for the test metrics, 95% bootstrap CIs and batch-1 latency. Prints a Markdown table.

    python benchmarks/baselines_datasets.py [--datasets digits diabetes] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages import config  # noqa: E402
from stages.evaluate import stage as evaluate  # noqa: E402
from stages.prepare import stage as prepare  # noqa: E402


def bench(dataset: str, work: Path) -> tuple[float, dict]:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"]["source"] = dataset
    params = work / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = config.load(params)
    prepare.run(cfg, work / "prepared", root=work)
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}")
    cmd = [
        sys.executable, "-m", "stages.baselines", "--params", str(params),
        "--prepared", str(work / "prepared"), "--augmented", str(work / "augmented"),
        "--out", str(work / "models"), "--metrics", str(work / "baselines.json"),
        "--importance", str(work / "importance"),
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    evaluate.run(
        cfg,
        evaluate.Paths(
            work / "prepared", work / "models", work / "none.pt", work / "none",
            work / "leaderboard.json", work / "plots", work / "reports", work / "importance",
        ),
    )  # fmt: skip
    return wall, json.loads((work / "leaderboard.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["digits", "breast_cancer", "diabetes"])
    ap.add_argument("--out", type=Path, default=None, help="keep scratch outputs here")
    args = ap.parse_args()
    print("| dataset | model | test metric | value | 95% CI | batch-1 ms | stage wall s |")
    print("|---|---|---|---|---|---|---|")
    for dataset in args.datasets:
        with tempfile.TemporaryDirectory() as scratch:
            work = (args.out / dataset) if args.out else Path(scratch)
            work.mkdir(parents=True, exist_ok=True)
            wall, board = bench(dataset, work)
        h = board["headline"]
        for name, row in board["candidates"].items():
            ci = f"[{row[f'{h}_ci_low']:.3f}, {row[f'{h}_ci_high']:.3f}]"
            print(
                f"| {dataset} | {name} | {h} | {row[h]:.3f} | {ci} | "
                f"{row['latency_ms_b1']:.2f} | {wall:.1f} |"
            )


if __name__ == "__main__":
    main()
