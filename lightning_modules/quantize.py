"""ONNX export (verified against PyTorch) and ONNX Runtime INT8 quantization.

- `export_onnx`: float32 (B, *input_shape) -> the network's raw output, dynamic batch axis.
- `verify_onnx`: max |ORT - torch| on sample rows must stay within a tolerance.
- `quantize_dynamic_int8`: weights INT8 ahead of time, activations quantized per call
  (MatMul/Gemm/LSTM/Attention: the Linear/LSTM-heavy case).
- `quantize_static_int8`: weights and activations INT8, activation ranges calibrated on
  training rows (minmax / entropy / percentile), QOperator format, per-channel weights.

Quantization-aware fine-tuning is not offered: ONNX Runtime only quantizes after training,
and the PyTorch QAT flow (`torch.ao.quantization`) is deprecated in this torch; its
successor (torchao's PT2E flow) is not a dependency here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUT, OUTPUT = "input", "output"
# A first conv (fed by the model input) whose reduction depth (in-channels x kernel area) is
# below this is a candidate to stay fp32 in the static INT8 model: with so little work per
# output, (re)quantizing can cost more than the int8 kernel saves (the digits cnn's 1x3x3
# first conv: 0.48 ms int8 vs 0.18 ms fp32 at batch 256, while its 32x3x3 second conv ran
# 2.6x faster in int8; 2026-11-26). Not a rule: a resnet's 3x3x3 stem on 3x32x32 ran 9%
# slower that way, so `quantize_static_int8` times both models and keeps the faster.
INT8_MIN_CONV_DEPTH = 32
# Model metadata key: ONNX Runtime graph optimizers to skip when loading the file (comma
# separated), honoured by `session`. A static INT8 model whose first quantized conv follows
# an fp32 MaxPool sets QDQPropagationTransformer: it would move the QuantizeLinear above the
# MaxPool, where ORT's uint8 NCHW MaxPool ran 8x slower than the fp32 one (2.4 vs 0.67 ms
# per batch of 256 for the whole digits cnn; outputs are identical either way, since max
# pooling commutes with a monotonic quantization).
DISABLED_OPTIMIZERS_KEY = "onnxruntime.disabled_optimizers"


def export_onnx(net: nn.Module, example: torch.Tensor, path: str | Path, opset: int) -> None:
    """Export `net` (eval mode) to `path` with a dynamic batch dimension."""
    net.eval()
    torch.onnx.export(
        net,
        (example,),
        str(path),
        input_names=[INPUT],
        output_names=[OUTPUT],
        opset_version=opset,
        dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        dynamo=False,
    )


def session(path: str | Path, threads: int = 1, optimized_path: str | Path | None = None):
    """A CPU ONNX Runtime session with a fixed intra-op thread count.

    Honours the graph optimizers a model file asks ONNX Runtime to skip
    (`DISABLED_OPTIMIZERS_KEY` in its metadata, written by `quantize_static_int8`).
    `optimized_path`: also write the graph as ONNX Runtime optimized it (inspection, tests).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    extra = {}
    if disabled := disabled_optimizers(path):
        extra["disabled_optimizers"] = disabled
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"], **extra)


def disabled_optimizers(path: str | Path) -> list[str]:
    """The ONNX Runtime graph optimizers the model's metadata asks to skip."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == DISABLED_OPTIMIZERS_KEY:
            return [name for name in prop.value.split(",") if name]
    return []


def run_onnx(sess, X: np.ndarray, batch_size: int = 512) -> np.ndarray:
    outs = [
        sess.run(None, {INPUT: np.ascontiguousarray(X[i : i + batch_size], dtype=np.float32)})[0]
        for i in range(0, len(X), batch_size)
    ]
    return np.concatenate(outs)


def verify_onnx(net: nn.Module, path: str | Path, X: np.ndarray, tolerance: float) -> float:
    """Max absolute difference between ORT and torch outputs on `X`.

    Raises:
        ValueError: when outputs differ by more than `tolerance` (`within_tolerance`).
    """
    with torch.inference_mode():
        expected = net.eval()(torch.as_tensor(X, dtype=torch.float32)).numpy()
    got = run_onnx(session(path), X)
    diff = float(np.max(np.abs(got - expected))) if len(X) else 0.0
    if got.shape != expected.shape or not within_tolerance(got, expected, tolerance):
        raise ValueError(
            f"{path}: ONNX output differs from PyTorch (shape {got.shape} vs "
            f"{expected.shape}, max |diff| {diff:.3g} > tolerance {tolerance:g} x the outputs' "
            f"scale {_scale(expected):.3g})"
        )
    return diff


def within_tolerance(got: np.ndarray, expected: np.ndarray, tolerance: float) -> bool:
    """|got - expected| <= tolerance * (scale + |expected|), scale = max(1, std of expected).

    Relative to the outputs' own spread: a regression network's outputs are in the target's
    units (prices in the thousands), where float32's rounding alone reaches 4e-3 on the
    outputs near zero, and a fixed absolute 1e-4 refused every such export.
    """
    return bool(np.allclose(got, expected, atol=tolerance * _scale(expected), rtol=tolerance))


def _scale(expected: np.ndarray) -> float:
    return max(1.0, float(np.std(expected))) if expected.size else 1.0


def quantize_dynamic_int8(src: str | Path, dst: str | Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm", "LSTM", "Attention"],
    )


def _set_metadata(path: str | Path, key: str, value: str) -> None:
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


# ops a kept-fp32 input conv's output may pass through before the first int8 kernel
_UNARY = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "MaxPool", "AveragePool"}


def input_convs(path: str | Path, min_depth: int = INT8_MIN_CONV_DEPTH) -> list[str]:
    """Nodes to try in fp32: each Conv fed by a graph input whose weight has
    (in-channels / group) x kernel area below `min_depth`, with the single-consumer
    activation/pool nodes after it (so the input is quantized right before the first int8
    kernel: a uint8 MaxPool in NCHW layout ran 8x slower than the fp32 one). The walk stops
    at anything else (a residual Add, a second consumer)."""
    import onnx

    model = onnx.load(str(path))
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    inputs = {i.name for i in model.graph.input} - set(weights)
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[0] not in inputs:
            continue
        dims = weights.get(node.input[1])
        if not dims or int(np.prod(dims[1:])) >= min_depth:
            continue
        names.append(node.name)
        nxt = consumers.get(node.output[0], [])
        while len(nxt) == 1 and nxt[0].op_type in _UNARY:
            names.append(nxt[0].name)
            nxt = consumers.get(nxt[0].output[0], [])
    return names


def quantize_static_int8(
    src: str | Path,
    dst: str | Path,
    calibration: np.ndarray,
    method: str = "minmax",
    per_channel: bool = True,
    fp32_input_conv: str = "auto",
    threads: int = 1,
) -> list[str]:
    """Static INT8 (U8 activations, S8 weights) calibrated on `calibration` rows.

    QOperator format (QLinearConv/QLinearMatMul with the int8 weights inside the node) rather
    than QDQ: the same kernels and accuracy here, but no separate DequantizeLinear node and
    tensor per weight, so the file is ~10% smaller (3.61x vs 3.28x the fp32 ONNX on the tuned
    digits CNN, 2026-11-23). S8 activations are not used: ORT's QOperator s8s8 conv path
    measured ~9x slower than u8s8 on this AVX2 CPU.

    `fp32_input_conv`: "auto" quantizes twice when the model has a shallow input conv
    (`input_convs`), with and without it in fp32, times both at batch 256 on `threads`
    threads and keeps the faster; "always" / "never" skip the timing. The mixed model's
    file asks ORT to skip QDQ propagation (`DISABLED_OPTIMIZERS_KEY`).

    Returns the names of the nodes left in fp32 (empty: the whole model is int8).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if fp32_input_conv not in ("auto", "always", "never"):
        raise ValueError(
            f"fp32_input_conv: expected auto, always or never, got {fp32_input_conv!r}"
        )
    dst = Path(dst)
    prepared, mixed = dst.with_suffix(".pre.onnx"), dst.with_suffix(".mixed.onnx")
    try:
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        keep = [] if fp32_input_conv == "never" else input_convs(prepared)
        if not keep or fp32_input_conv == "auto":
            _static(prepared, dst, calibration, method, per_channel, [])
        if not keep:
            return []
        _static(prepared, mixed, calibration, method, per_channel, keep)
        _set_metadata(mixed, DISABLED_OPTIMIZERS_KEY, "QDQPropagationTransformer")
        if fp32_input_conv == "auto":
            batch = np.resize(calibration, (256, *calibration.shape[1:])).astype(np.float32)
            if _seconds(mixed, batch, threads) >= _seconds(dst, batch, threads):
                return []
        mixed.replace(dst)
        return keep
    finally:
        prepared.unlink(missing_ok=True)
        mixed.unlink(missing_ok=True)


def _static(prepared: Path, dst: Path, calibration, method, per_channel, exclude) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from lightning_modules.calibration import CalibrationReader

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    quantize_static(
        str(prepared),
        str(dst),
        CalibrationReader(calibration, INPUT),
        quant_format=QuantFormat.QOperator,
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=methods[method],
        nodes_to_exclude=exclude,
        extra_options={"CalibMovingAverage": False},
    )


def _seconds(path: Path, batch: np.ndarray, threads: int, repeats: int = 15) -> float:
    """Median seconds per call of `batch` through `session(path)`, after warm-up."""
    from lightning_modules.timing import call_seconds

    sess = session(path, threads)
    times = call_seconds(lambda: run_onnx(sess, batch, batch_size=len(batch)), 3, repeats)
    return float(np.median(times))
