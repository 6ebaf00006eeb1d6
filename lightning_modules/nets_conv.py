"""Convolutional networks for (C, H, W) images: a VGG-style CNN and a small ResNet."""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.layers import activation, norm2d
from lightning_modules.pooling import feature_size, pool_to


def _channels(spec, block: int) -> int:
    return max(1, round(spec.width * spec.widen**block))


def conv(c_in: int, c_out: int, spec, stride: int = 1, kind: str | None = None) -> nn.Module:
    """A k x k convolution of kind `spec.conv`: standard, group (`spec.groups` groups) or
    depthwise separable (a per-channel k x k conv, then a 1 x 1 conv that mixes channels).

    `kind="standard"` forces a standard conv: the first conv of a network, fed by the
    image's own 1 or 3 channels, always is one (as in ResNeXt's and MobileNet's stems).
    """
    k, pad = spec.kernel_size, spec.kernel_size // 2
    kind = kind or spec.conv
    if kind == "group":
        if c_in % spec.groups or c_out % spec.groups:
            raise ValueError(
                f"model.groups = {spec.groups} must divide the conv's channels ({c_in} in, "
                f"{c_out} out)"
            )
        return nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, groups=spec.groups,
                         bias=False)  # fmt: skip
    if kind == "depthwise_separable":
        return nn.Sequential(
            nn.Conv2d(c_in, c_in, k, stride=stride, padding=pad, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, bias=False)


class CNN(nn.Module):
    """`depth` blocks of conv -> norm -> activation -> 2x2 max-pool (while the map is >= 4)."""

    def __init__(self, input_shape: tuple[int, ...], n_outputs: int, spec):
        super().__init__()
        c_in, h, w = input_shape
        layers: list[nn.Module] = []
        for block in range(spec.depth):
            c_out = _channels(spec, block)
            layers += [
                conv(c_in, c_out, spec, kind="standard" if block == 0 else None),
                norm2d(spec.norm, c_out, spec.norm_groups),
                activation(spec.activation),
            ]
            if min(h, w) >= 4:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c_in = c_out
        self.features = nn.Sequential(*layers)
        h, w = feature_size(self.features, input_shape)
        self.pool = pool_to(h, w, min(h, 2), min(w, 2))  # caps the head's input
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(spec.dropout),
            nn.Linear(c_in * min(h, 2) * min(w, 2), n_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))  # (B, C, H, W) -> (B, n_outputs)


class BasicBlock(nn.Module):
    """conv -> norm -> act -> conv -> norm, plus identity (or 1x1 conv) shortcut, then act."""

    def __init__(self, c_in: int, c_out: int, stride: int, spec):
        super().__init__()
        self.body = self.layers(c_in, c_out, stride, spec)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                norm2d(spec.norm, c_out, spec.norm_groups),
            )
        self.act = activation(spec.activation)

    @staticmethod
    def layers(c_in: int, c_out: int, stride: int, spec) -> nn.Sequential:
        return nn.Sequential(
            conv(c_in, c_out, spec, stride),
            norm2d(spec.norm, c_out, spec.norm_groups),
            activation(spec.activation),
            conv(c_out, c_out, spec),
            norm2d(spec.norm, c_out, spec.norm_groups),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class Bottleneck(BasicBlock):
    """1x1 conv to c_out/4 -> k x k conv -> 1x1 conv back to c_out (each normed), plus the
    shortcut, then act: ResNet-50's block, fewer weights than the basic block at equal width."""

    @staticmethod
    def layers(c_in: int, c_out: int, stride: int, spec) -> nn.Sequential:
        mid = max(1, c_out // 4)
        if spec.conv == "group":  # the k x k conv's channels: a multiple of the groups
            mid = max(spec.groups, mid // spec.groups * spec.groups)
        return nn.Sequential(
            nn.Conv2d(c_in, mid, 1, bias=False),
            norm2d(spec.norm, mid, spec.norm_groups),
            activation(spec.activation),
            conv(mid, mid, spec, stride),
            norm2d(spec.norm, mid, spec.norm_groups),
            activation(spec.activation),
            nn.Conv2d(mid, c_out, 1, bias=False),
            norm2d(spec.norm, c_out, spec.norm_groups),
        )


class ResNet(nn.Module):
    """Stem conv, then `depth` residual blocks; blocks after the first halve the map (>= 4)."""

    def __init__(self, input_shape: tuple[int, ...], n_outputs: int, spec):
        super().__init__()
        c_in, h, w = input_shape
        if spec.kernel_size % 2 == 0:
            raise ValueError(
                f"resnet needs an odd kernel_size (keeps the map size), got {spec.kernel_size}"
            )
        stem_c = _channels(spec, 0)
        self.stem = nn.Sequential(
            nn.Conv2d(c_in, stem_c, spec.kernel_size, padding=spec.kernel_size // 2, bias=False),
            norm2d(spec.norm, stem_c, spec.norm_groups),
            activation(spec.activation),
        )
        blocks, c = [], stem_c
        for block in range(spec.depth):
            stride = 2 if block > 0 and min(h, w) >= 4 else 1
            h, w = (h + 1) // stride, (w + 1) // stride
            kind = Bottleneck if spec.block == "bottleneck" else BasicBlock
            blocks.append(kind(c, _channels(spec, block), stride, spec))
            c = _channels(spec, block)
        self.blocks = nn.Sequential(*blocks)
        h, w = feature_size(nn.Sequential(self.stem, self.blocks), input_shape)
        self.head = nn.Sequential(
            pool_to(h, w, 1, 1), nn.Flatten(), nn.Dropout(spec.dropout), nn.Linear(c, n_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))  # (B, C, H, W) -> (B, n_outputs)
