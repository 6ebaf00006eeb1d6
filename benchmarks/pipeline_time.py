"""Whole-pipeline wall time (#19 target 1): `dvc repro` from a fresh clone, each stage a
fresh process ("cold") against the stages forked from the warm interpreter ("warm",
`python -m stages.runtime.warm`, what `make repro` runs), and the two leaderboards.

    .venv/bin/python benchmarks/pipeline_time.py [--repeats 1] [--ref HEAD]

Each run clones `--ref` into a temp folder and runs the default params there with this
checkout's .venv (set-up is not timed). Each output line is stamped as it arrives, so a
stage's wall time is from its "Running stage" line to the next one; "first line" is when
the stage's first log line came (process start, imports, MLflow run), the rest is its work
and exit. Runs alternate cold / warm so a drift in the machine's speed hits both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"


def run_pipeline(ref: str, warm: bool, folder: Path) -> dict:
    clone = folder / ("warm" if warm else "cold")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", ref], cwd=clone, check=True)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    env["REPROLAB_WARM"] = "1" if warm else "0"
    cmd = [str(BIN / "python"), "-m", "stages.runtime.warm", "--", str(BIN / "dvc"), "repro"]
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    stages: dict[str, dict] = {}
    current = None
    for line in proc.stdout:
        now = time.monotonic() - start
        if m := re.match(r"Running stage '(\w+)'", line):
            current = m.group(1)
            stages[current] = {"start": now, "first_line": None, "end": now}
        elif current:
            if stages[current]["first_line"] is None and re.match(r"\d\d:\d\d:\d\d \w+ ", line):
                stages[current]["first_line"] = now - stages[current]["start"]
            stages[current]["end"] = now
    code = proc.wait()
    total = time.monotonic() - start
    if code:
        raise SystemExit(f"dvc repro ({'warm' if warm else 'cold'}) exited {code}")
    names = list(stages)
    for a, b in zip(names, names[1:] + [None], strict=True):
        stages[a]["wall"] = (stages[b]["start"] if b else total) - stages[a]["start"]
    board = json.loads((clone / "metrics" / "leaderboard.json").read_text())
    metric = "accuracy" if board["task"] != "regression" else "r2"
    scores = {name: row.get(metric) for name, row in board["candidates"].items()}
    return {"total": total, "stages": stages, "best": board["best"], "scores": scores}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--ref", default="HEAD")
    args = ap.parse_args()
    results: dict[str, list[dict]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="pipeline-time-") as tmp:
        for i in range(args.repeats):
            for mode in ("cold", "warm"):
                folder = Path(tmp) / f"{mode}{i}"
                folder.mkdir()
                res = run_pipeline(args.ref, mode == "warm", folder)
                results[mode].append(res)
                print(f"{mode} run {i + 1}: {res['total']:.1f} s, best={res['best']}", flush=True)
    print(f"\n{date.today()} {platform.machine()} {os.cpu_count()} cores, ref {args.ref}")
    print("| stage | cold wall | cold first line | warm wall | warm first line |")
    print("|---|---:|---:|---:|---:|")
    cold, warm = results["cold"][-1], results["warm"][-1]
    for name in cold["stages"]:
        c, w = cold["stages"][name], warm["stages"].get(name, {})
        print(
            f"| {name} | {c['wall']:.1f} s | {c['first_line'] or 0:.1f} s | "
            f"{w.get('wall', 0):.1f} s | {w.get('first_line') or 0:.1f} s |"
        )
    for mode, runs in results.items():
        print(f"{mode}: total " + ", ".join(f"{r['total']:.1f} s" for r in runs))
    same = all(r["scores"] == results["cold"][0]["scores"] for r in results["warm"])
    print(f"leaderboards equal: {same} (best cold {cold['best']}, warm {warm['best']})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
