"""Name -> building block: activations, normalization layers and weight initialization."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
NORMS = ("batch", "layer", "group", "none")
INITS = ("xavier_uniform", "xavier_normal", "kaiming", "default")


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def norm1d(name: str, features: int, groups: int = 8) -> nn.Module:
    """Norm over the last dim of (B, F) or (B, T, F) activations."""
    if name == "batch":
        return nn.BatchNorm1d(features)
    if name == "layer":
        return nn.LayerNorm(features)
    if name == "group":
        return nn.GroupNorm(_groups(groups, features), features)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}; choose one of {', '.join(NORMS)}")


class TokenNorm(nn.Module):
    """A (B, F) norm applied to every token of (..., D): batch statistics over all tokens of
    the batch (BatchNorm), or groups of each token's features (GroupNorm)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, x):
        return self.norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def token_norm(name: str, dim: int, groups: int = 8) -> nn.Module:
    """Norm of (..., D) tokens over their D features (transformer blocks)."""
    if name in ("layer", "none"):
        return norm1d(name, dim, groups)
    return TokenNorm(norm1d(name, dim, groups))


def norm2d(name: str, channels: int, groups: int = 8) -> nn.Module:
    """Norm of (B, C, H, W) feature maps; `layer` normalizes over (C, H, W) per sample."""
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "layer":
        return nn.GroupNorm(1, channels)
    if name == "group":
        return nn.GroupNorm(_groups(groups, channels), channels)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}; choose one of {', '.join(NORMS)}")


def _groups(groups: int, channels: int) -> int:
    """The largest divisor of `channels` not above `groups` (GroupNorm needs an exact split)."""
    g = max(1, min(groups, channels))
    while channels % g:
        g -= 1
    return g


def init_weights(module: nn.Module, scheme: str, activation_name: str = "relu") -> None:
    """Initialize every Linear/Conv/RNN weight matrix in place; biases start at zero."""
    if scheme == "default":
        return
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; choose one of {', '.join(INITS)}")
    nonlinearity = "leaky_relu" if activation_name == "leaky_relu" else "relu"
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d):
            _init_matrix(m.weight, scheme, nonlinearity)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LSTM | nn.GRU):
            for name, p in m.named_parameters():
                if name.startswith("weight"):
                    _init_matrix(p, scheme, nonlinearity)
                else:
                    nn.init.zeros_(p)


def _init_matrix(weight, scheme: str, nonlinearity: str) -> None:
    if scheme == "xavier_uniform":
        nn.init.xavier_uniform_(weight)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(weight)
    else:
        nn.init.kaiming_normal_(weight, nonlinearity=nonlinearity)
