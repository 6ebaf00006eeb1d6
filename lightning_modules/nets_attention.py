"""Pre-norm transformer encoder: ViT patches for images, one token per feature for tables,
one token per time step for sequences; a [CLS] token feeds the head.

`model.norm` picks the norm before attention, before the feed-forward block and on the
[CLS] output: layer (the usual LayerNorm, torch's own encoder layer), batch (BatchNorm
over every token of the batch), group (GroupNorm of each token's features) or none.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lightning_modules.layers import activation, token_norm
from lightning_modules.layouts import layout


class FeatureTokens(nn.Module):
    """(B, F) -> (B, F, D): feature i becomes x_i * w_i + b_i (FT-Transformer tokenizer)."""

    def __init__(self, n_features: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_features, dim) / math.sqrt(dim))
        self.bias = nn.Parameter(torch.zeros(n_features, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(-1) * self.weight + self.bias


class PatchTokens(nn.Module):
    """(B, C, H, W) -> (B, H/p * W/p, D) with one strided convolution."""

    def __init__(self, channels: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def sinusoidal(n_tokens: int, dim: int) -> torch.Tensor:
    pos = torch.arange(n_tokens, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_tokens, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return table


class NormedEncoderLayer(nn.TransformerEncoderLayer):
    """torch's pre-norm encoder layer with another norm in place of both LayerNorms.

    Always the plain Python path: torch's fused inference path reads LayerNorm's weights.
    """

    def __init__(self, *args, norm: str, norm_groups: int, **kwargs):
        super().__init__(*args, **kwargs)
        dim = self.linear1.in_features
        self.norm1 = token_norm(norm, dim, norm_groups)
        self.norm2 = token_norm(norm, dim, norm_groups)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src + self._sa_block(self.norm1(src), src_mask, src_key_padding_mask, is_causal)
        return x + self._ff_block(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], n_outputs: int, spec):
        super().__init__()
        dim, kind = spec.width, layout(input_shape)
        if kind == "image":
            c, h, w = input_shape
            if h % spec.patch_size or w % spec.patch_size:
                raise ValueError(f"patch_size {spec.patch_size} must divide the image size {h}x{w}")
            self.tokens: nn.Module = PatchTokens(c, dim, spec.patch_size)
            n_tokens = (h // spec.patch_size) * (w // spec.patch_size)
        elif kind == "table":
            self.tokens = FeatureTokens(input_shape[0], dim)
            n_tokens = input_shape[0]
        else:
            self.tokens = nn.Linear(input_shape[1], dim)
            n_tokens = input_shape[0]
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        if spec.positions == "learned":
            self.pos = nn.Parameter(torch.randn(1, n_tokens + 1, dim) * 0.02)
        else:
            self.register_buffer("pos", sinusoidal(n_tokens + 1, dim).unsqueeze(0))
        block = dict(
            d_model=dim,
            nhead=spec.heads,
            dim_feedforward=max(1, round(dim * spec.mlp_ratio)),
            dropout=spec.dropout,
            activation=activation(spec.activation),
            batch_first=True,
            norm_first=True,
        )
        if spec.norm == "layer":
            layer = nn.TransformerEncoderLayer(**block)
        else:
            layer = NormedEncoderLayer(**block, norm=spec.norm, norm_groups=spec.norm_groups)
        self.encoder = nn.TransformerEncoder(layer, spec.depth, enable_nested_tensor=False)
        self.norm = token_norm(spec.norm, dim, spec.norm_groups)
        self.head = nn.Linear(dim, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(x)  # (B, N, D)
        cls = self.cls.expand(tokens.shape[0], -1, -1)
        z = self.encoder(torch.cat([cls, tokens], dim=1) + self.pos)  # (B, N + 1, D)
        return self.head(self.norm(z[:, 0]))  # (B, n_outputs)
