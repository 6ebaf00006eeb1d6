"""GPU figures for the train and compress stages, in one short run (a lent GPU is scarce).

1. `arch matrix`: every arch trains one epoch through `stages.train.run` on the GPU with the
   shipped `deterministic: true`, at fp32 and bf16-mixed (catches ops that torch refuses
   without a deterministic CUDA kernel).
2. `throughput`: samples/s of the train stage for cnn and resnet at 32 vs bf16-mixed, with
   the GPU's mean utilization while training (NVML via `torch.cuda.utilization`); on digits
   (the pipeline's data, 8x8) and on a generated CIFAR-shaped set (3x32x32, 10 classes,
   a class-dependent pattern plus noise) where the GPU has real work per step.
3. `compile` (#19): samples/s and utilization of the cnn on the generated 3x32x32 set with
   `train.compile` off and each mode asked for, at widths 32 and 128 (batch 256), with the
   compile seconds (first epoch minus a steady one). Target: reduce-overhead >= 2x eager
   samples/s at width 32.
4. `latency`: the default model, trained on the GPU, served by PyTorch on the GPU at fp32,
   fp16 and bf16 (batch 1 and 256, CUDA-synchronized, p50/p90 after warm-up) and its test
   accuracy in each dtype.

The loop overhead (plain PyTorch vs reprolab) on the GPU is train_overhead.py
`--accelerator cuda --no-startup`.

Usage: python benchmarks/gpu_benchmark.py [--quick] [--accelerator cuda] [--out F.json]
(`--accelerator cpu --quick` checks the script on a machine without a GPU.)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_overhead import params  # noqa: E402

from stages.common import splits  # noqa: E402
from stages.train.stage import Paths, run  # noqa: E402

ARCHS = ("mlp", "cnn", "resnet", "transformer", "lstm", "gru")
PRECISIONS = ("32", "bf16-mixed")


def device_info(accelerator: str) -> dict:
    import lightning

    info = {"torch": torch.__version__, "lightning": lightning.__version__}
    info["python"] = platform.python_version()
    if accelerator == "cuda":
        props = torch.cuda.get_device_properties(0)
        info |= {
            "device": torch.cuda.get_device_name(0),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "bf16_supported": torch.cuda.is_bf16_supported(),
        }
    return info


class UtilizationSampler:
    """Mean GPU utilization (%) over a block, sampled from NVML every `period` seconds."""

    def __init__(self, active: bool, period: float = 0.05):
        self.active, self.period, self.samples = active, period, []
        self._stop = threading.Event()

    def __enter__(self):
        if self.active:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.samples.append(torch.cuda.utilization(0))
            except Exception:  # no NVML: report None rather than fail the benchmark
                return
            time.sleep(self.period)

    def __exit__(self, *exc):
        self._stop.set()
        if self.active:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(statistics.mean(self.samples), 1) if self.samples else None


def synthetic_images(folder: Path, rows: int, seed: int = 0) -> tuple[Path, dict]:
    """A CIFAR-shaped prepared folder: 3x32x32 images, 10 classes, learnable but not trivial."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(0, 1, (10, 3, 32, 32)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", rows), ("val", rows // 8), ("test", rows // 8)):
        y = rng.integers(0, 10, n)
        X = 0.5 * patterns[y] + rng.normal(0, 1, (n, 3, 32, 32)).astype(np.float32)
        np.savez(folder / f"{split}.npz", X=X.astype(np.float32), y=y.astype(np.int64))
    schema = json.loads((ROOT / "data/prepared/schema.json").read_text())
    schema |= {"dataset": "synthetic-3x32x32", "input_shape": [3, 32, 32]}
    schema["rows"] = {"train": rows, "val": rows // 8, "test": rows // 8}
    (folder / "schema.json").write_text(json.dumps(schema))
    return folder, schema


def paths_for(prepared: Path, augmented: Path, out: Path) -> Paths:
    return Paths.under(out, prepared, augmented)


def train_once(cfg, schema, paths: Paths, gpu: bool) -> dict:
    import csv

    with UtilizationSampler(gpu) as util:
        t0 = time.perf_counter()
        metrics = run(cfg, schema, paths)
        wall = time.perf_counter() - t0
    with open(paths.history) as fh:
        seconds = [float(r["train_seconds"]) for r in csv.DictReader(fh)]
    return {"metrics": metrics, "epoch_seconds": seconds, "wall_s": round(wall, 2), "util": util}


def arch_matrix(acc: str, tmp: Path, epochs: int) -> list[dict]:
    schema = json.loads((ROOT / "data/prepared/schema.json").read_text())
    rows = []
    for arch in ARCHS:
        for precision in PRECISIONS:
            cfg = params(
                epochs,
                2,
                accelerator=acc,
                precision=precision,
                overrides={"model": {"arch": arch}},
            )
            row = {"arch": arch, "precision": precision, "deterministic": True}
            out = tmp / f"m-{arch}-{precision}"
            try:
                res = train_once(cfg, schema, paths_for(*_digits(), out), acc == "cuda")
                row |= {"ok": True, "val_acc": round(res["metrics"]["val/acc"], 4)}
                row["wall_s"] = res["wall_s"]
                if arch in ("cnn", "resnet"):  # deterministic: a second run, bit for bit
                    train_once(cfg, schema, paths_for(*_digits(), tmp / "again"), False)
                    row["rerun_max_abs_diff"] = _max_diff(out / "model.pt", tmp / "again/model.pt")
            except Exception as exc:  # record and go on: one arch must not sink the rest
                row |= {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:400]}
                traceback.print_exc()
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def _max_diff(a: Path, b: Path) -> float:
    sa, sb = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def _digits() -> tuple[Path, Path]:
    return ROOT / "data/prepared", ROOT / "data/augmented"


def throughput(
    acc: str, tmp: Path, epochs: int, synthetic_rows: int, widths: tuple[int, ...] = ()
) -> list[dict]:
    """Samples/s per (arch, data, batch, width) at fp32 and bf16-mixed.

    `widths`: also run the generated 3x32x32 set with these `model.width`s at batch 512
    (where the GPU gets enough work per kernel for bf16 to matter).
    """
    digits_schema = json.loads((ROOT / "data/prepared/schema.json").read_text())
    synth, synth_schema = synthetic_images(tmp / "synthetic", synthetic_rows)
    no_aug = {"use_augmented": False}
    sets = [
        ("digits 1x8x8", _digits(), digits_schema, 64, None, {}),
        ("digits 1x8x8", _digits(), digits_schema, 256, None, {}),
        ("synthetic 3x32x32", (synth, synth), synth_schema, 256, None, no_aug),
        *[("synthetic 3x32x32", (synth, synth), synth_schema, 512, w, no_aug) for w in widths],
    ]
    rows = []
    for arch in ("cnn", "resnet"):
        for name, (prep, aug), schema, batch, width, extra in sets:
            for precision in PRECISIONS:
                model = {"arch": arch} | ({"width": width} if width else {})
                cfg = params(
                    epochs,
                    2,
                    accelerator=acc,
                    precision=precision,
                    overrides={"model": model, "train": {"batch_size": batch, **extra}},
                )
                out = tmp / f"t-{arch}-{name[:5]}-{batch}-{width}-{precision}"
                row = {"arch": arch, "data": name, "batch": batch, "precision": precision}
                row["width"] = cfg.model.width
                try:
                    res = train_once(cfg, schema, paths_for(prep, aug, out), acc == "cuda")
                    split = aug if cfg.train.use_augmented else prep
                    n = len(splits.load(split / "train", "y")["y"])
                    epoch_s = statistics.median(res["epoch_seconds"][1:] or res["epoch_seconds"])
                    row |= {
                        "rows": n,
                        "epoch_s": round(epoch_s, 4),
                        "samples_per_s": round(n / epoch_s),
                        "gpu_util_mean_pct": res["util"].mean,
                        "val_acc": round(res["metrics"]["val/acc"], 4),
                    }
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"[:400]
                    traceback.print_exc()
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def compiled(
    acc: str, tmp: Path, epochs: int, rows: int, modes: tuple[str, ...], widths=(32, 128)
) -> list[dict]:
    """Eager vs torch.compile modes: steady samples/s, GPU utilization, compile seconds."""
    synth, schema = synthetic_images(tmp / "synthetic-compile", rows)
    out = []
    for width in widths:
        for mode in modes:
            cfg = params(
                epochs,
                2,
                accelerator=acc,
                overrides={
                    "model": {"arch": "cnn", "width": width},
                    "train": {"batch_size": 256, "use_augmented": False, "compile": mode},
                },
            )
            row = {"arch": "cnn", "width": width, "compile": mode, "batch": 256}
            try:
                res = train_once(cfg, schema, paths_for(synth, synth, tmp / f"c-{width}-{mode}"),
                                 acc == "cuda")  # fmt: skip
                secs = res["epoch_seconds"]
                steady = statistics.median(secs[1:] or secs)
                row |= {
                    "epoch_s": round(steady, 4),
                    "samples_per_s": round(rows / steady),
                    "compile_s": round(max(secs[0] - steady, 0.0), 2),
                    "gpu_util_mean_pct": res["util"].mean,
                    "val_acc": round(res["metrics"]["val/acc"], 4),
                }
            except Exception as exc:  # one mode failing must not sink the others
                row["error"] = f"{type(exc).__name__}: {exc}"[:400]
                traceback.print_exc()
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


def latency(acc: str, tmp: Path, repeats: int) -> dict:
    """Train the shipped defaults on the device, then time the model in three dtypes."""
    from lightning_modules.serialization import load_network

    schema = json.loads((ROOT / "data/prepared/schema.json").read_text())
    cfg = params(None, 2, accelerator=acc)
    res = train_once(cfg, schema, paths_for(*_digits(), tmp / "full"), acc == "cuda")
    net, _meta = load_network(tmp / "full" / "model.pt")
    test = splits.load(ROOT / "data/prepared/test", "X", "y")
    device = torch.device(acc)
    out = {
        "fit_wall_s": res["wall_s"],
        "epochs": res["metrics"]["epochs"],
        "val_acc": res["metrics"]["val/acc"],
        "variants": [],
    }
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    for name, dtype in dtypes.items():
        model = net.to(device=device, dtype=dtype).eval()
        X = torch.from_numpy(test["X"]).to(device=device, dtype=dtype)
        row: dict = {"dtype": name}
        with torch.inference_mode():
            pred = model(X).float().argmax(1).cpu().numpy()
            row["test_acc"] = round(float((pred == test["y"]).mean()), 4)
            for size in (1, 256):
                batch = X.repeat(-(-size // len(X)), *([1] * (X.dim() - 1)))[:size]
                for _ in range(20):
                    model(batch)
                times = []
                for _ in range(repeats):
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    model(batch)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                p50, p90 = np.percentile(times, [50, 90]) * 1000
                row[f"b{size}_p50_ms"], row[f"b{size}_p90_ms"] = round(p50, 4), round(p90, 4)
        print(json.dumps(row), flush=True)
        out["variants"].append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accelerator", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="few epochs/rows: check the script")
    ap.add_argument("--out", default=None, help="write all figures to this JSON file")
    ap.add_argument(
        "--skip", nargs="*", default=[], choices=["matrix", "throughput", "compile", "latency"]
    )
    ap.add_argument(
        "--compile-modes", nargs="+", default=["off", "default", "reduce-overhead", "max-autotune"]
    )
    ap.add_argument(
        "--widths", type=int, nargs="*", default=[], help="also 3x32x32 at these model.widths"
    )
    a = ap.parse_args()
    if a.accelerator == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; use --accelerator cpu --quick to check the script")
    report: dict = {"date": time.strftime("%Y-%m-%d"), "info": device_info(a.accelerator)}
    print(json.dumps(report["info"]), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="reprolab-gpu-"))
    try:
        if "matrix" not in a.skip:
            report["arch_matrix"] = arch_matrix(a.accelerator, tmp, 1)
        if "throughput" not in a.skip:
            rows = 1024 if a.quick else 32768
            epochs = 2 if a.quick else 4
            report["throughput"] = throughput(a.accelerator, tmp, epochs, rows, tuple(a.widths))
        if "compile" not in a.skip:
            rows, epochs = (1024, 2) if a.quick else (32768, 4)
            widths = (32,) if a.quick else (32, 128)
            report["compile"] = compiled(
                a.accelerator, tmp, epochs, rows, tuple(a.compile_modes), widths
            )
        if "latency" not in a.skip:
            report["latency"] = latency(a.accelerator, tmp, 10 if a.quick else 200)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if a.out:
            Path(a.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
