"""Wall time and peak RSS of each stage as the data grows (issue #16), for one checkout.

Generates (once, cached under --cache) image folders of N 3x32x32 PNGs (10 classes: a
class pattern plus noise, so models have something to learn) and CSV tables of N rows (8
numeric columns, 2 categorical, a noisy regression target), then runs each stage's
command as dvc.yaml writes it, in a scratch folder, under `/usr/bin/time` (elapsed seconds
and maximum resident set size of the stage's process). Run it once per checkout to compare
today's code with a branch, side by side:

    git worktree add /tmp/old <commit>
    python benchmarks/data_scaling.py --repo /tmp/old --kind images --sizes 10000 50000
    python benchmarks/data_scaling.py --kind images --sizes 10000 50000

Training runs one epoch, tuning and compression are off (trials and fine-tuning read the
data as train does), baselines are a fast subset unless --baselines says otherwise.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "augment", "baselines", "train", "evaluate")


def image_folder(root: Path, n: int, seed: int = 0) -> Path:
    """N 3x32x32 PNGs in 10 class folders (cached: a folder with a .done marker is reused)."""
    from PIL import Image

    folder = root / f"images-{n}"
    if (folder / ".done").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, (10, 32, 32, 3))
    for c in range(10):
        (folder / f"c{c}").mkdir(parents=True)
    labels = rng.integers(0, 10, n)
    for i in range(0, n, 1000):
        block = labels[i : i + 1000]
        noise = rng.integers(-60, 61, (len(block), 32, 32, 3))
        pixels = np.clip(0.6 * patterns[block] + noise + 50, 0, 255).astype(np.uint8)
        for j, (label, img) in enumerate(zip(block, pixels, strict=True)):
            Image.fromarray(img).save(folder / f"c{label}" / f"{i + j:07d}.png")
    (folder / ".done").touch()
    return folder


def table(root: Path, n: int, seed: int = 0) -> Path:
    """A CSV of N rows: 8 numeric columns, 2 categorical, target `price` (cached)."""
    import pandas as pd

    path = root / f"table-{n}.csv"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    coef = rng.normal(size=8)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        for start in range(0, n, 500_000):
            m = min(500_000, n - start)
            X = rng.normal(size=(m, 8))
            city = rng.choice(["ams", "ber", "lis", "osl", "rom", "vie"], m)
            kind = rng.choice(["flat", "house", "loft"], m)
            price = X @ coef + (city == "osl") * 2.0 + (kind == "house") * 1.5
            df = pd.DataFrame(X, columns=[f"x{k}" for k in range(8)])
            df["city"], df["kind"] = city, kind
            df["price"] = price + rng.normal(scale=0.5, size=m)
            df.to_csv(fh, index=False, header=start == 0, float_format="%.5g")
    tmp.rename(path)
    return path


def params_for(repo: Path, source: Path, kind: str, baselines: list[str]) -> dict:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["data"] |= {"source": str(source), "target": "price" if kind == "table" else None}
    raw["tune"]["enabled"] = False
    raw["train"] |= {"max_epochs": 1, "use_tuned": False, "progress_bar": "off"}
    raw["baselines"]["models"] = baselines
    raw["evaluate"] |= {"bootstrap": 200, "latency_repeats": 3, "latency_budget_s": 0.2}
    raw["serve"] = {**raw.get("serve", {}), "registry": False}
    return raw


def stage_commands(repo: Path) -> dict[str, str]:
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    return {name: " ".join(spec["cmd"].split()) for name, spec in stages.items()}


def run_stage(cmd: str, work: Path, repo: Path) -> tuple[float, float, int]:
    """(elapsed s, peak RSS MiB, exit code) of one stage command under /usr/bin/time."""
    env = {**os.environ, "PYTHONPATH": str(repo), "CI": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    report = work / ".time"
    full = ["/usr/bin/time", "-o", str(report), "-f", "%e %M", *shlex.split(cmd)]
    proc = subprocess.run(full, cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
    elapsed, rss_kib = report.read_text().split()[-2:]
    return float(elapsed), int(rss_kib) / 1024, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=ROOT, help="the checkout whose code runs")
    ap.add_argument("--kind", choices=["images", "table"], default="images")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--stages", nargs="+", default=list(STAGES))
    ap.add_argument("--baselines", nargs="+", default=None)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "reprolab-data")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="params overrides, e.g. train.in_memory=false (values read as YAML)",
    )
    args = ap.parse_args()
    repo = args.repo.resolve()
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    args.cache.mkdir(parents=True, exist_ok=True)
    fast = ["logreg_l2", "random_forest"] if args.kind == "images" else ["ridge", "random_forest"]
    commands = stage_commands(repo)
    print(f"repo {repo} @ {commit}; load {os.getloadavg()[0]:.2f}; {time.strftime('%F %T')}")
    print(f"overrides: {' '.join(args.set) or 'none'}")
    print("| data | rows | stage | wall s | peak RSS MiB | ms per 1k rows | exit |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for n in args.sizes:
        t0 = time.perf_counter()
        source = image_folder(args.cache, n) if args.kind == "images" else table(args.cache, n)
        print(f"<!-- generated/cached {source} in {time.perf_counter() - t0:.0f} s -->", flush=True)
        with tempfile.TemporaryDirectory(prefix="scaling-", dir=args.cache) as tmp:
            work = Path(tmp)
            shutil.copy(repo / "dvc.yaml", work / "dvc.yaml")
            raw = params_for(repo, source, args.kind, args.baselines or fast)
            for item in args.set:
                key, _, value = item.partition("=")
                *parents, leaf = key.split(".")
                node = raw
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = yaml.safe_load(value)
            (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
            for stage in args.stages:
                wall, rss, rc = run_stage(commands[stage], work, repo)
                per_k = wall * 1e6 / n
                row = f"| {args.kind} | {n} | {stage} | {wall:.1f} | {rss:.0f} | {per_k:.1f}"
                print(f"{row} | {rc} |", flush=True)
                if rc:
                    break


if __name__ == "__main__":
    main()
