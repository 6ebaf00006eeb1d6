"""LSTM/GRU classifiers for (T, F) sequences; (C, H, W) images are read row by row."""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.layers import norm1d
from lightning_modules.layouts import layout


class Recurrent(nn.Module):
    """`depth` stacked LSTM/GRU layers of `width` units; the last step's state feeds the head."""

    def __init__(self, input_shape: tuple[int, ...], n_outputs: int, spec, cell: str = "lstm"):
        super().__init__()
        self.image = layout(input_shape) == "image"
        if self.image:
            c, _, w = input_shape
            n_in = c * w  # one time step = one image row across channels
        else:
            n_in = input_shape[1]
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(
            n_in,
            spec.width,
            num_layers=spec.depth,
            batch_first=True,
            dropout=spec.dropout if spec.depth > 1 else 0.0,
            bidirectional=spec.bidirectional,
        )
        out = spec.width * (2 if spec.bidirectional else 1)
        self.head = nn.Sequential(
            norm1d(spec.norm, out, spec.norm_groups),
            nn.Dropout(spec.dropout),
            nn.Linear(out, n_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.image:
            x = x.permute(0, 2, 1, 3).flatten(2)  # (B, C, H, W) -> (B, H, C * W)
        seq, _ = self.rnn(x)  # (B, T, D)
        return self.head(seq[:, -1])  # (B, n_outputs)
