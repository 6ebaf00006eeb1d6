"""Pruning: global L1 unstructured (torch.nn.utils.prune) and structured channel removal.

Unstructured pruning zeroes the smallest-magnitude weights across every hidden Linear/Conv
layer and LSTM/GRU weight matrix at once; the masks stay as forward hooks while fine-tuning
and are made permanent with `prune.remove`. The output layer is never pruned: its weights are
the fewest and (trained) the smallest, so a global ranking took all 32 of a regression
head's at 80% sparsity and left a constant prediction.
Structured pruning uses torch-pruning's dependency graph to delete whole conv channels /
linear units (and everything that consumes them: norms, residual adds, the flattened head),
so the result is a smaller dense network with fewer FLOPs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import prune

STRUCTURED_ARCHS = ("mlp", "cnn", "resnet")
STRUCTURED_SKIPPED = {
    "transformer": "attention heads/embedding dims are tied to the [CLS] token, positional "
    "table and head count; torch-pruning needs per-model head rules we do not ship",
    "lstm": "torch-pruning prunes nn.LSTM only for single-layer, unidirectional cells; "
    "our stacked/bidirectional recurrent nets are not covered",
    "gru": "torch-pruning has no nn.GRU pruner",
}


def prunable_weights(net: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(name in the report, module, parameter) of every weight unstructured pruning ranks:
    Linear/Conv weights called directly (not MultiheadAttention's) and LSTM/GRU weight
    matrices; never the output layer's."""
    skipped = {
        id(child)
        for m in net.modules()
        if isinstance(m, nn.MultiheadAttention)
        for child in m.modules()
    } | {id(output_layer(net))}
    out = []
    for name, m in net.named_modules():
        if id(m) in skipped:
            continue
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d):
            out.append((name, m, "weight"))
        elif isinstance(m, nn.LSTM | nn.GRU):
            weights = [p for p, _ in m.named_parameters() if p.startswith("weight")]
            out += [(f"{name}.{p}", m, p) for p in weights]
    return out


def sparsity_schedule(target: float, steps: int) -> list[float]:
    """Cumulative sparsity after each round, rising linearly to `target`."""
    return [target * (k + 1) / steps for k in range(steps)]


def prune_unstructured(
    net: nn.Module,
    target: float,
    steps: int = 1,
    finetune: Callable[[nn.Module], None] | None = None,
) -> dict[str, float]:
    """Prune `net` in place to `target` global sparsity, then make the masks permanent.

    Args:
        net: the network (changed in place).
        target: fraction of prunable weights set to zero, in [0, 1).
        steps: rounds of prune -> `finetune(net)`; each round raises the sparsity.
        finetune: called after each round with the masks active (None: no fine-tuning).

    Returns:
        Real sparsity per layer name, plus "global".
    """
    params = [(m, param) for _, m, param in prunable_weights(net)]
    done = 0.0
    for level in sparsity_schedule(target, steps):
        # each call prunes a fraction of the weights still unpruned
        amount = 1.0 - (1.0 - level) / (1.0 - done)
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
        done = level
        if finetune is not None:
            finetune(net)
    for m, name in params:
        if prune.is_pruned(m):
            prune.remove(m, name)
    return layer_sparsity(net)


def layer_sparsity(net: nn.Module) -> dict[str, float]:
    """Fraction of exactly-zero weights per prunable weight and over all of them."""
    out, zeros, total = {}, 0, 0
    for name, m, param in prunable_weights(net):
        w = getattr(m, param).detach()
        z = int((w == 0).sum())
        out[name] = round(z / w.numel(), 6)
        zeros, total = zeros + z, total + w.numel()
    out["global"] = round(zeros / max(1, total), 6)
    return out


def output_layer(net: nn.Module) -> nn.Module:
    """The last Linear: its outputs are the classes, never pruned."""
    return [m for m in net.modules() if isinstance(m, nn.Linear)][-1]


def prune_structured(
    net: nn.Module, arch: str, example: torch.Tensor, ratio: float, norm: str = "l1"
) -> nn.Module:
    """Remove `ratio` of the channels/units of every prunable layer (output layer kept).

    Args:
        net: the network (changed in place and returned).
        arch: its registry name; only `STRUCTURED_ARCHS` are supported.
        example: a (B, *input_shape) batch to trace the dependency graph.
        ratio: fraction of channels removed per layer, in (0, 1).
        norm: l1 | l2 magnitude importance.

    Raises:
        NotImplementedError: for an arch in `STRUCTURED_SKIPPED`, with the reason.
    """
    if arch not in STRUCTURED_ARCHS:
        why = STRUCTURED_SKIPPED.get(arch, "not supported")
        raise NotImplementedError(f"structured pruning of {arch!r} skipped: {why}")
    import torch_pruning as tp

    net.eval()
    pruner = tp.pruner.BasePruner(  # MagnitudePruner is its deprecated alias in 1.6
        net,
        example,
        importance=tp.importance.MagnitudeImportance(p=1 if norm == "l1" else 2),
        pruning_ratio=ratio,
        ignored_layers=[output_layer(net)],
    )
    pruner.step()
    return net


def count_macs(net: nn.Module, example: torch.Tensor) -> int | None:
    """Multiply-accumulates of one forward pass on one row (dense: zeros still count), by
    torch-pruning's op counter; None where it cannot trace the network."""
    import torch_pruning as tp

    try:
        with torch.inference_mode():
            macs, _ = tp.utils.count_ops_and_params(net.eval(), example[:1])
    except Exception:  # an op its counter does not know: the column is left empty
        return None
    return int(macs)


def count_params(net: nn.Module) -> tuple[int, int]:
    """(parameters, non-zero parameters)."""
    total = sum(p.numel() for p in net.parameters())
    nonzero = sum(int((p != 0).sum()) for p in net.parameters())
    return total, nonzero
