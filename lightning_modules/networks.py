"""Network registry keyed by `model.arch`, plus the MLP and the regression output scaler.

`build_network(**net_kwargs)` is the one constructor: the same plain arguments are stored
in `models/model.pt`, so a saved network is rebuilt without params.yaml. The input layout
follows `input_shape`: (F,) tables, (T, F) sequences, (C, H, W) images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lightning_modules.layers import activation, init_weights, norm1d
from lightning_modules.layouts import SUPPORTED, layout


@dataclass(frozen=True)
class NetSpec:
    """Shape knobs shared by every architecture (see the `model:` section)."""

    width: int = 32
    depth: int = 2
    widen: float = 2.0
    kernel_size: int = 3
    conv: str = "standard"  # standard | group | depthwise_separable (cnn/resnet)
    groups: int = 2  # conv: group
    block: str = "basic"  # resnet: basic | bottleneck
    activation: str = "relu"
    norm: str = "batch"
    norm_groups: int = 8
    dropout: float = 0.1
    heads: int = 4
    patch_size: int = 2
    positions: str = "learned"
    mlp_ratio: float = 2.0
    bidirectional: bool = False


class MLP(nn.Module):
    """Flattened input -> `depth` x (Linear -> norm -> activation -> dropout) -> Linear."""

    def __init__(self, input_shape: tuple[int, ...], n_outputs: int, spec: NetSpec):
        super().__init__()
        n_in = int(torch.Size(input_shape).numel())
        layers: list[nn.Module] = [nn.Flatten()]
        for _ in range(spec.depth):
            layers += [
                nn.Linear(n_in, spec.width),
                norm1d(spec.norm, spec.width, spec.norm_groups),
                activation(spec.activation),
                nn.Dropout(spec.dropout),
            ]
            n_in = spec.width
        layers.append(nn.Linear(n_in, n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, n_outputs)


class ScaledOutput(nn.Module):
    """Regression: the inner net predicts standardized targets; forward returns original units."""

    def __init__(self, inner: nn.Module, mean: float, std: float):
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def standardized(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.std + self.mean


def _registry() -> dict[str, Callable[..., nn.Module]]:
    from lightning_modules.nets_attention import Transformer
    from lightning_modules.nets_conv import CNN, ResNet
    from lightning_modules.nets_recurrent import Recurrent

    return {
        "mlp": MLP,
        "cnn": CNN,
        "resnet": ResNet,
        "transformer": Transformer,
        "lstm": lambda shape, n, spec: Recurrent(shape, n, spec, cell="lstm"),
        "gru": lambda shape, n, spec: Recurrent(shape, n, spec, cell="gru"),
    }


ARCHS = ("mlp", "cnn", "resnet", "transformer", "lstm", "gru")


def build_network(
    arch: str,
    input_shape: list[int],
    n_outputs: int,
    init: str = "kaiming",
    target_mean: float | None = None,
    target_std: float | None = None,
    **spec: Any,
) -> nn.Module:
    """Build an initialized network.

    Args:
        arch: one of `ARCHS`.
        input_shape: one sample's shape, (F,), (T, F) or (C, H, W).
        n_outputs: classes (multiclass), or 1 (binary logit / regression value).
        init: weight init scheme (`layers.INITS`).
        target_mean, target_std: regression only; wraps the net in `ScaledOutput`.
        **spec: `NetSpec` fields; `norm="auto"` is layer for the transformer, batch
            for every other arch.

    Returns:
        The module; forward maps (B, *input_shape) float32 to (B, n_outputs).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    kind = layout(input_shape)
    if kind not in SUPPORTED[arch]:
        raise ValueError(
            f"arch {arch!r} does not take {kind} input of shape {list(input_shape)}; "
            f"it takes {', '.join(SUPPORTED[arch])}"
        )
    if spec.get("norm") == "auto":  # the usual norm of each family
        spec = {**spec, "norm": "layer" if arch == "transformer" else "batch"}
    net_spec = NetSpec(**spec)
    net = _registry()[arch](tuple(input_shape), n_outputs, net_spec)
    init_weights(net, init, net_spec.activation)
    if target_mean is not None:
        net = ScaledOutput(net, target_mean, target_std or 1.0)
    return net
