"""Epoch time with the train split streamed from disk against held in memory (#16 target:
streamed <= 1.15x in memory at 50k images on CPU).

Writes a generated split of `--rows` 3x32x32 uint8 images (10 classes, seeded) once, then
runs the train stage's own `train.run` on it, `train.in_memory: true` and `false`
alternately (`--rounds` pairs, the order flipped each round, so a drift in the machine's
speed hits both), `fit_on: train`, default cnn and batch, `--epochs` epochs, no MLflow.
Reports the train seconds of each epoch from the run's history and the ratio of the sums.

    .venv/bin/python benchmarks/stream_epoch.py [--rows 50000] [--rounds 2] [--epochs 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages import config  # noqa: E402
from stages.common import splits  # noqa: E402
from stages.runtime.cli import setup_logging  # noqa: E402
from stages.train import stage as train  # noqa: E402


def write_prepared(root: Path, rows: int, seed: int = 0) -> dict:
    """A prepared folder: train (`rows`) / val / test splits of uint8 3x32x32 images whose
    class shows as a brighter quadrant and channel, plus noise, and its schema.json."""
    rng = np.random.default_rng(seed)
    counts = {"train": rows, "val": max(1000, rows // 50), "test": 1000}
    for name, n in counts.items():
        y = rng.integers(0, 10, n)
        X = rng.integers(0, 96, (n, 3, 32, 32), dtype=np.uint8)
        for k in range(10):
            sel = y == k
            c, q = k % 3, k % 4
            ys, xs = (q // 2) * 16, (q % 2) * 16
            X[sel, c, ys : ys + 16, xs : xs + 16] += 128
        splits.write(root / name, x_scale=1 / 255, X=X, y=y)
    schema = {
        "dataset": "stream-epoch",
        "source": "generated",
        "fingerprint": f"generated:{rows}:{seed}",
        "task": "classification",
        "modality": "image",
        "classes": [str(k) for k in range(10)],
        "n_classes": 10,
        "input_shape": [3, 32, 32],
        "feature_names": [],
        "rows": counts,
        "target_stats": None,
        "preprocessing": {"kind": "image", "scale": 1 / 255, "offset": 0.0, "input": "arrays"},
        "notes": [],
        "seed": seed,
    }
    (root / "schema.json").write_text(json.dumps(schema))
    return schema


def one_run(prepared: Path, schema: dict, in_memory: bool, epochs: int, out: Path) -> list:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    t = raw["train"]
    t.update(
        {
            "max_epochs": epochs,
            "in_memory": in_memory,
            "fit_on": "train",
            "use_augmented": False,
            "threads": None,
            "use_tuned": False,
        }
    )
    cfg = config.validate(raw, out / "params.yaml")
    paths = train.Paths.under(out, prepared)
    train.run(cfg, schema, paths)
    with paths.history.open() as f:
        return [float(r["train_seconds"]) for r in csv.DictReader(f)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    setup_logging("stream_epoch")  # the stage's log format; library noise filtered
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        schema = write_prepared(root / "prepared", args.rows)
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for r in range(args.rounds):
            order = (True, False) if r % 2 == 0 else (False, True)
            for held in order:
                got = one_run(root / "prepared", schema, held, args.epochs, root / f"r{r}{held}")
                seconds[held] += got
                kind = "in memory" if held else "streamed"
                print(f"round {r + 1} {kind}: " + ", ".join(f"{s:.2f}" for s in got), flush=True)
    held, streamed = sum(seconds[True]), sum(seconds[False])
    print(f"\n{date.today()} {platform.machine()} rows={args.rows} epochs={args.epochs}")
    print(f"in memory {held:.1f} s, streamed {streamed:.1f} s, streamed / in memory "
          f"{streamed / held:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
