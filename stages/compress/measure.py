"""Measure one compressed variant: size, parameters, latency percentiles and val metric.

Latency runs in the runtime the variant ships in (PyTorch for `.pt`, ONNX Runtime for
`.onnx`) under the same fixed thread count, on val rows (batch 1: one row; batch 256: val
rows tiled), after `warmup` untimed calls; p50 and p90 of up to `repeats` timed calls.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lightning_modules.timing import call_seconds
from stages.common.latency import BATCHES, batch_of, limited_threads

Runner = Callable[[np.ndarray], np.ndarray]


def torch_runner(net) -> Runner:
    import torch

    def run(X: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.as_tensor(X, dtype=torch.float32)).numpy()

    net.eval()
    return run


def onnx_runner(path: str | Path, threads: int) -> Runner:
    from lightning_modules.quantize import run_onnx, session

    sess = session(path, threads)
    return lambda X: run_onnx(sess, X, batch_size=max(len(X), 1))


def latency(
    run: Runner, X: np.ndarray, warmup: int, repeats: int, budget_s: float, threads: int
) -> dict[str, float]:
    """`latency_ms_b{1,256}_p{50,90}` in milliseconds."""
    out: dict[str, float] = {}
    with limited_threads(threads):
        for size in BATCHES:
            batch = np.ascontiguousarray(batch_of(X, size), dtype=np.float32)
            times = call_seconds(lambda b=batch: run(b), warmup, repeats, budget_s, min_calls=2)
            p50, p90 = np.percentile(times, [50, 90]) * 1000
            out[f"latency_ms_b{size}_p50"] = round(float(p50), 4)
            out[f"latency_ms_b{size}_p90"] = round(float(p90), 4)
    return out


def metric_name(task: str) -> str:
    return "val_rmse" if task == "regression" else "val_acc"


def val_metric(task: str, outputs: np.ndarray, y: np.ndarray) -> float:
    """sklearn's accuracy from raw outputs (logits / one logit), or its RMSE in original units:
    the same functions `stages.common.scores` scores every candidate with."""
    from sklearn.metrics import accuracy_score, root_mean_squared_error

    outputs = np.asarray(outputs, dtype=np.float64)
    if task == "regression":
        return float(root_mean_squared_error(np.asarray(y, dtype=np.float64), outputs[:, 0]))
    pred = outputs.argmax(axis=1) if task == "multiclass" else (outputs[:, 0] > 0).astype(int)
    return float(accuracy_score(np.asarray(y, dtype=np.int64), pred))


def trivial_metric(task: str, y_fit: np.ndarray, y: np.ndarray) -> float:
    """The val metric of the trivial predictor: the fit rows' mean value or majority class."""
    y = np.asarray(y, dtype=np.float64)
    if task == "regression":
        return float(np.sqrt(np.mean((y - np.mean(y_fit)) ** 2)))
    return float(np.mean(y == np.bincount(np.asarray(y_fit, dtype=np.int64)).argmax()))


def skill(task: str, metric: float, trivial: float) -> float:
    """Share of the trivial predictor's error removed: 1 - mse / mse_0 (regression: R² against
    the fit rows' mean) or (acc - acc_0) / (1 - acc_0); 1 is perfect, <= 0 no better than
    trivial, NaN when the trivial predictor is already perfect on these rows."""
    if task == "regression":
        return 1.0 - (metric / trivial) ** 2 if trivial > 0 else float("nan")
    return (metric - trivial) / (1.0 - trivial) if trivial < 1 else float("nan")


def onnx_counts(path: str | Path) -> tuple[int, int]:
    """(numbers, non-zero numbers) in an ONNX graph's initializers."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
    return int(sum(a.size for a in arrays)), int(sum(np.count_nonzero(a) for a in arrays))


def measure(
    run: Runner,
    X: np.ndarray,
    y: np.ndarray,
    task: str,
    files: list[Path],
    lat: Any,
) -> dict[str, Any]:
    """Bytes on disk, latency percentiles and the val metric of one variant."""
    from stages.common.sizes import bytes_on_disk

    row: dict[str, Any] = {"bytes": bytes_on_disk(files)}
    row |= latency(run, X, lat.warmup, lat.repeats, lat.budget_s, lat.threads)
    row[metric_name(task)] = round(val_metric(task, run(X), y), 6)
    return row
