"""train.compile on CPU: steady epoch time compiled / eager, and what compiling costs.

Two workloads, each trained by the real train stage (`stages.train.stage.run`) with
`train.compile` off and then each mode asked for, alternating so background load hits
all alike:
- the default digits cnn (params.yaml's model, 8x8 images, batch 64);
- a 28x28 single-channel cnn, width 32, batch 128, on generated 28x28 data (5,000 rows).

Epoch time = the training part of an epoch (History's train_seconds); steady = the median
of the epochs after the first. Compile cost = (first epoch train + val seconds) minus the
steady epoch's: torch.compile traces and builds kernels on the first training and the
first validation batch. Each run is its own process with a fresh inductor cache
(TORCHINDUCTOR_CACHE_DIR), so the figure is a cold compile, unless --warm (one shared
cache: what a second run, or the next tuning trial, pays).

    python benchmarks/compile_benchmark.py [--epochs 4] [--threads 2] [--modes default]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_overhead import params  # noqa: E402

from stages.prepare import stage as prepare  # noqa: E402
from stages.train.stage import Paths, run  # noqa: E402


def generated_28x28(path: Path, n: int = 5000, seed: int = 0) -> Path:
    """Four classes: which quadrant of a noisy 28x28 image holds a bright blob."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    X = rng.normal(0.1, 0.1, size=(n, 1, 28, 28)).astype(np.float32)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        X[i, 0, r * 14 + 3 : r * 14 + 11, q * 14 + 3 : q * 14 + 11] += 0.8
    np.savez(path, X=X, y=y)
    return path


def one_run(cfg, src: Path, tmp: Path, name: str) -> dict[str, float]:
    schema = json.loads((src / "schema.json").read_text())
    paths = Paths.under(tmp / name, src)
    run(cfg, schema, paths)
    rows = [r for r in _history(paths.history)]
    steady = statistics.median(r["train_seconds"] for r in rows[1:])
    steady_val = statistics.median(r["val_seconds"] for r in rows[1:])
    first = rows[0]["train_seconds"] + rows[0]["val_seconds"]
    return {"steady": steady, "compile": first - steady - steady_val}


def _history(path: Path):
    lines = path.read_text().splitlines()
    head = lines[0].split(",")
    for line in lines[1:]:
        yield {k: float(v) for k, v in zip(head, line.split(","), strict=True) if v}


WORKLOADS = {
    "digits cnn (default)": ({"train": {"use_augmented": False}}, "digits"),
    "28x28 cnn w32 b128": (
        {
            "model": {"arch": "cnn", "width": 32},
            "train": {"batch_size": 128, "use_augmented": False},
        },
        "generated",
    ),
}


def measure_one(label: str, mode: str, epochs: int, threads: int, tmp: Path) -> dict:
    overrides, source = WORKLOADS[label]
    if source == "generated":
        source = str(generated_28x28(tmp / "g28.npz"))
    train = {**overrides.get("train", {}), "compile": mode}
    cfg = params(
        epochs, threads, overrides={**overrides, "data": {"source": source}, "train": train}
    )
    src = tmp / "prepared"
    prepare.run(cfg, src, root=tmp)
    return one_run(cfg, src, tmp, mode)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", nargs="+", default=["default"])
    ap.add_argument("--warm", action="store_true", help="one inductor cache for every run")
    ap.add_argument("--one", nargs=2, metavar=("WORKLOAD", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as d:
            got = measure_one(*args.one, args.epochs, args.threads, Path(d))
        print("RESULT " + json.dumps(got))
        return
    shared = tempfile.mkdtemp(prefix="inductor-")
    print("| workload | mode | steady epoch s | compiled / eager | compile s |")
    print("|---|---|---:|---:|---:|")
    for label in WORKLOADS:
        eager = None
        for mode in ["off", *args.modes]:
            cache = shared if args.warm else tempfile.mkdtemp(prefix="inductor-")
            out = subprocess.run(
                [sys.executable, __file__, "--one", label, mode,
                 "--epochs", str(args.epochs), "--threads", str(args.threads)],
                capture_output=True, text=True, env=os.environ | {"TORCHINDUCTOR_CACHE_DIR": cache},
            )  # fmt: skip
            if not args.warm:
                shutil.rmtree(cache, ignore_errors=True)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if not lines:
                print(f"| {label} | {mode} | failed: {out.stderr.strip().splitlines()[-1:]} | | |")
                continue
            got = json.loads(lines[-1][len("RESULT ") :])
            eager = eager or got
            ratio = got["steady"] / eager["steady"]
            cost = "-" if mode == "off" else f"{got['compile']:.1f}"
            print(f"| {label} | {mode} | {got['steady']:.3f} | {ratio:.2f} | {cost} |", flush=True)


if __name__ == "__main__":
    main()
