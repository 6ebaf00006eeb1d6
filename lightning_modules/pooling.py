"""Average pooling to a fixed output size that stays deterministic on CUDA.

`nn.AdaptiveAvgPool2d`'s CUDA backward has no deterministic kernel: with
`train.deterministic: true` (the default) torch refuses it, so a cnn/resnet could not train
on a GPU at all. The input size is known when the network is built, so a fixed-window
`nn.AvgPool2d` (deterministic, and exported to ONNX as AveragePool, which ONNX Runtime
quantizes) does the same job.
"""

from __future__ import annotations

import torch
from torch import nn


def pool_to(h: int, w: int, out_h: int, out_w: int) -> nn.Module:
    """Average an (h, w) map down to (out_h, out_w).

    Windows are ceil(h / out_h) x ceil(w / out_w) with equal stride; a last, shorter window
    averages only its real cells. Where the sizes divide evenly this equals
    `adaptive_avg_pool2d` exactly (every shape the networks reach on 8x8 digits).
    """
    if not (1 <= out_h <= h and 1 <= out_w <= w):
        raise ValueError(f"cannot pool a {h}x{w} map to {out_h}x{out_w}")
    if (h, w) == (out_h, out_w):
        return nn.Identity()
    kernel = (-(-h // out_h), -(-w // out_w))
    reached = (-(-h // kernel[0]), -(-w // kernel[1]))
    if reached != (out_h, out_w):  # e.g. 5 -> 4: windows of 2 give 3 outputs
        raise ValueError(
            f"cannot pool a {h}x{w} map to {out_h}x{out_w} with equal windows "
            f"(they give {reached[0]}x{reached[1]})"
        )
    return nn.AvgPool2d(kernel, stride=kernel, ceil_mode=True, count_include_pad=False)


@torch.no_grad()
def feature_size(body: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(H, W) of `body`'s output for one (C, H, W) input, found by running it once."""
    was_training = body.training
    body.eval()  # batch norm: no running-stat update, and batch 1 is allowed
    try:
        out = body(torch.zeros(1, *input_shape))
    finally:
        body.train(was_training)
    return int(out.shape[-2]), int(out.shape[-1])
