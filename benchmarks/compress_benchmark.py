"""Compress stage on digits with the shipped params: size, speed and test accuracy per variant.

Trains the default model (params.yaml's model/train, no tuning) into a temp folder, runs
`stages.compress.run` with the shipped `compress:` section, then scores every variant
file on the untouched test split the way evaluate loads it, and checks the issue's targets.

    .venv/bin/python -m benchmarks.compress_benchmark [params.yaml]
    (needs data/prepared and data/augmented from `dvc repro augment`)
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np


def test_accuracy(path: Path, X: np.ndarray, y: np.ndarray) -> float:
    from lightning_modules.quantize import run_onnx, session
    from lightning_modules.serialization import load_network, predict

    if path.suffix == ".onnx":
        scores = run_onnx(session(path), X)
    else:
        net, meta = load_network(path)
        scores = predict(net, meta, X)
    return float(np.mean(scores.argmax(1) == y))


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    from stages import config
    from stages.compress import stage as compress
    from stages.train import stage as train

    cfg = config.load(sys.argv[1] if len(sys.argv) > 1 else "params.yaml")
    schema = json.loads(Path("data/prepared/schema.json").read_text())
    test = np.load("data/prepared/test.npz")
    X, y = test["X"].astype(np.float32), test["y"]
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(tmp)
        train.run(
            cfg,
            schema,
            train.Paths.under(w, Path("data/prepared"), Path("data/augmented")),
        )
        paths = compress.Paths(
            prepared=Path("data/prepared"),
            augmented=Path("data/augmented"),
            model=w / "model.pt",
            out=w / "compressed",
            metrics=w / "compression.json",
            plot=w / "compression.csv",
        )
        rows = compress.run(cfg, paths)
        files = {p.stem: p for p in paths.out.iterdir()} | {"original": paths.model}
        acc = {name: test_accuracy(files[name], X, y) for name in rows if name in files}
    ref = rows["onnx_fp32"]
    print(
        f"{'variant':22} {'status':7} {'params':>7} {'nonzero':>7} {'bytes':>7} "
        f"{'b1 p50':>8} {'b256 p50':>9} {'b256 p90':>9} {'val':>6} {'test':>6} "
        f"{'size x':>6} {'speed x':>7}"
    )
    for name, r in rows.items():
        if r["status"] != "ok":
            print(f"{name:22} {r['status']:7} {r.get('error', '')}")
            continue
        print(
            f"{name:22} {r['status']:7} {r['params']:7d} {r['nonzero_params']:7d} "
            f"{r['bytes']:7d} {r['latency_ms_b1_p50']:8.3f} {r['latency_ms_b256_p50']:9.3f} "
            f"{r['latency_ms_b256_p90']:9.3f} {r['val_acc']:6.3f} {acc[name]:6.3f} "
            f"{ref['bytes'] / r['bytes']:6.2f} "
            f"{ref['latency_ms_b256_p50'] / r['latency_ms_b256_p50']:7.2f}"
        )
    drop = {name: round(100 * (acc["original"] - a), 2) for name, a in acc.items()}
    print("\ntest accuracy drop vs original (pt):", json.dumps(drop))
    static = f"int8_static_{cfg.compress.quantize.calibration}"
    structured = f"structured_{cfg.compress.structured.norm}_50"
    checks = {
        "int8 static >= 3.5x smaller": ref["bytes"] / rows[static]["bytes"] >= 3.5,
        "int8 static >= 1.8x faster b256": rows[static].get("speedup_b256_vs_onnx_fp32", 0) >= 1.8,
        "int8 static drop <= 0.5pt": drop.get(static, 99) <= 0.5,
        "unstructured 80% drop <= 0.5pt": drop.get("prune_l1_80", 99) <= 0.5,
        "structured 50% >= 1.5x faster b256": rows.get(structured, {}).get(
            "speedup_b256_vs_onnx_fp32", 0
        )
        >= 1.5,
        "structured 50% drop <= 1pt": drop.get(structured, 99) <= 1.0,
    }
    for what, ok in checks.items():
        print(f"{'PASS' if ok else 'MISS'}  {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
