"""The compressed variants, one producer per technique; each writes its own file(s).

Shipping formats (what evaluate scores from models/compressed/):
- unstructured-pruned networks and distillation students: `<name>.pt` (models/model.pt
  format, rebuildable with `build_network` since shapes do not change / come from params);
- structured-pruned networks: `<name>.onnx` only. Their per-layer widths no longer follow
  `build_network`'s width/widen arguments, and a pickled module cannot be loaded with
  `weights_only=True`, so the physically smaller graph ships as fp32 ONNX;
- INT8 variants and the fp32 reference: `<name>.onnx`.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stages.compress.measure import Runner, onnx_counts, onnx_runner, torch_runner

log = logging.getLogger("reprolab.compress")
REFERENCE = "onnx_fp32"


@dataclass
class Variant:
    runtime: str  # pytorch | onnxruntime
    files: list[Path]
    run: Runner
    params: int
    nonzero_params: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """Everything the producers share: inputs, the trained network and where to write."""

    cfg: Any  # the `compress` section
    seed: int
    teacher: torch.nn.Module
    meta: dict[str, Any]
    X: Any  # training rows as stored (fine-tuning, distillation, calibration): an array in
    # memory or a stages.common.splits reader, uint8 pixels times `scale` -> float32
    y: torch.Tensor
    X_val: np.ndarray
    out_dir: Path
    run_ids: dict[str, str | None] = field(default_factory=dict)
    scale: float | None = None

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Training rows `idx` as float32 model input."""
        from stages.common.splits import to_float

        return to_float(np.asarray(self.X[idx]), self.scale)

    @property
    def task(self) -> str:
        return self.meta["task"]


def _counts(net: torch.nn.Module) -> tuple[int, int]:
    from lightning_modules.pruning import count_params

    return count_params(net)


def macs(ctx: Context, net: torch.nn.Module) -> int | None:
    """MACs of one row through `net` (the `macs` column: what the runtime multiplies)."""
    from lightning_modules.pruning import count_macs

    return count_macs(net, torch.as_tensor(ctx.X_val[:1]))


def _finetune(ctx: Context, net, epochs: int, teacher=None, alpha=1.0, temperature=1.0):
    from lightning_modules.distill import DistillationModule, fit

    module = DistillationModule(net, ctx.task, ctx.y, teacher, alpha, temperature, lr=ctx.cfg.lr)
    return fit(module, ctx.X, epochs, ctx.cfg.batch_size, ctx.seed, ctx.scale)


def _save_pt(ctx: Context, name: str, net, arch: str, net_kwargs: dict, extra: dict) -> Path:
    from lightning_modules.serialization import package, save_network

    params = {
        **ctx.meta.get("params", {}),
        "compress": ctx.cfg.model_dump(mode="json"),
        "variant": name,
        **extra,
    }
    path = ctx.out_dir / f"{name}.pt"
    save_network(
        path,
        package(net, arch, net_kwargs, ctx.task, params, ctx.meta["schema"], ctx.run_ids.get(name)),
    )
    return path


def _onnx_variant(ctx: Context, path: Path, info: dict, counts=None) -> Variant:
    params, nonzero = counts or onnx_counts(path)
    return Variant(
        "onnxruntime", [path], onnx_runner(path, ctx.cfg.latency.threads), params, nonzero, info
    )


def reference(ctx: Context, name: str) -> Variant:
    """The trained network as fp32 ONNX, verified against PyTorch on val rows."""
    from lightning_modules.quantize import export_onnx, verify_onnx

    q = ctx.cfg.quantize
    path = ctx.out_dir / f"{name}.onnx"
    export_onnx(ctx.teacher, torch.as_tensor(ctx.X_val[:2]), path, q.opset)
    diff = verify_onnx(ctx.teacher, path, ctx.X_val, q.tolerance)
    info = {"onnx_max_abs_diff": diff, "macs": macs(ctx, ctx.teacher)}
    return _onnx_variant(ctx, path, info, _counts(ctx.teacher))


def unstructured(ctx: Context, name: str, sparsity: float) -> Variant:
    from lightning_modules.pruning import prune_unstructured

    u = ctx.cfg.unstructured
    net = copy.deepcopy(ctx.teacher)
    per_layer = prune_unstructured(
        net,
        sparsity,
        u.iterative_steps,
        finetune=lambda n: _finetune(ctx, n, u.finetune_epochs) if u.finetune_epochs else None,
    )
    net.eval()
    path = _save_pt(
        ctx, name, net, ctx.meta["arch"], ctx.meta["net_kwargs"], {"sparsity": sparsity}
    )
    info = {
        "target_sparsity": sparsity,
        "sparsity": per_layer["global"],
        "layer_sparsity": per_layer,
        "macs": macs(ctx, net),  # dense kernels: the zeros are multiplied too
    }
    return Variant("pytorch", [path], torch_runner(net), *_counts(net), info)


def structured(ctx: Context, name: str) -> Variant:
    from lightning_modules.pruning import prune_structured
    from lightning_modules.quantize import export_onnx, verify_onnx

    s = ctx.cfg.structured
    net = copy.deepcopy(ctx.teacher)
    example = torch.as_tensor(ctx.X_val[:2])
    prune_structured(net, ctx.meta["arch"], example, s.ratio, s.norm)
    net = _finetune(ctx, net, s.finetune_epochs)
    path = ctx.out_dir / f"{name}.onnx"
    export_onnx(net, example, path, ctx.cfg.quantize.opset)
    diff = verify_onnx(net, path, ctx.X_val, ctx.cfg.quantize.tolerance)
    info = {"ratio": s.ratio, "onnx_max_abs_diff": diff, "macs": macs(ctx, net)}
    return _onnx_variant(ctx, path, info, _counts(net))


def int8(ctx: Context, name: str, mode: str) -> Variant:
    from lightning_modules.quantize import quantize_dynamic_int8, quantize_static_int8

    q = ctx.cfg.quantize
    src = ctx.out_dir / f"{REFERENCE}.onnx"
    if not src.exists():
        raise RuntimeError(f"needs the fp32 ONNX export {src.name}, which failed (see its row)")
    path = ctx.out_dir / f"{name}.onnx"
    if mode == "dynamic":
        quantize_dynamic_int8(src, path)
        info = {"mode": "dynamic"}
    else:
        gen = np.random.default_rng(ctx.seed)
        rows = gen.permutation(len(ctx.X))[: q.calibration_size]
        fp32 = quantize_static_int8(
            src,
            path,
            ctx.rows(rows),
            q.calibration,
            q.per_channel,
            q.fp32_input_conv,
            threads=ctx.cfg.latency.threads,
        )
        info = {"mode": "static", "calibration": q.calibration, "calibration_rows": len(rows)}
        info["fp32_nodes"] = fp32  # a shallow input conv kept fp32 when that timed faster
    info["macs"] = macs(ctx, ctx.teacher)  # the fp32 graph's operations, in int8
    return _onnx_variant(ctx, path, info)


def student(ctx: Context, name: str, distilled: bool) -> Variant:
    """A smaller network trained with the teacher's soft targets, or from scratch."""
    from lightning_modules.distill import teacher_outputs
    from lightning_modules.networks import build_network

    d = ctx.cfg.distill
    arch = ctx.meta["arch"] if d.arch == "same" else d.arch
    net_kwargs = {**ctx.meta["net_kwargs"], "width": d.width, "depth": d.depth}
    torch.manual_seed(ctx.seed)
    net = build_network(arch, **net_kwargs)
    n_student, n_teacher = _counts(net)[0], _counts(ctx.teacher)[0]
    if n_student > n_teacher:
        log.warning(
            "compress.distill: student %s has %d params, more than the teacher's %d",
            arch,
            n_student,
            n_teacher,
        )
    teacher = teacher_outputs(ctx.teacher, ctx.X, scale=ctx.scale) if distilled else None
    alpha = d.alpha if distilled else 1.0
    net = _finetune(ctx, net, d.epochs, teacher, alpha, d.temperature)
    path = _save_pt(ctx, name, net, arch, net_kwargs, {"distilled": distilled})
    info = {
        "arch": arch,
        "width": d.width,
        "depth": d.depth,
        "epochs": d.epochs,
        "alpha": alpha,
        "temperature": d.temperature if distilled else None,
        "macs": macs(ctx, net),
    }
    return Variant("pytorch", [path], torch_runner(net), *_counts(net), info)


def jobs(cfg) -> list[tuple[str, str, Any]]:
    """(variant name, method, producer(ctx, name)) for every technique switched on."""
    out: list[tuple[str, str, Any]] = [(REFERENCE, "onnx_export", reference)]
    if cfg.unstructured.enabled:
        for s in cfg.unstructured.sparsities:
            tag = f"{s * 100:g}".replace(".", "p")
            out.append(
                (
                    f"prune_l1_{tag}",
                    "unstructured",
                    lambda ctx, name, s=s: unstructured(ctx, name, s),
                )
            )
    if cfg.structured.enabled:
        tag = f"{cfg.structured.ratio * 100:g}".replace(".", "p")
        out.append((f"structured_{cfg.structured.norm}_{tag}", "structured", structured))
    if cfg.quantize.enabled and cfg.quantize.dynamic:
        out.append(("int8_dynamic", "quantize_dynamic", lambda c, n: int8(c, n, "dynamic")))
    if cfg.quantize.enabled and cfg.quantize.static:
        out.append(
            (
                f"int8_static_{cfg.quantize.calibration}",
                "quantize_static",
                lambda c, n: int8(c, n, "static"),
            )
        )
    if cfg.distill.enabled:
        out.append(("student_distilled", "distill", lambda c, n: student(c, n, True)))
        out.append(("student_scratch", "scratch", lambda c, n: student(c, n, False)))
    return out
