"""MixUp and CutMix on training batches, seeded by a private `numpy.random.Generator`.

Targets become soft label distributions (rows still sum to 1: label mass is preserved);
regression targets are blended with the same weight. Global RNG state is never touched.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class BatchMixer:
    """Apply MixUp (prob `mixup_p`) or CutMix (prob `cutmix_p`) to a batch.

    Args:
        n_classes: classes for one-hot targets; 0 = targets are values (regression/binary).
        mixup_p, mixup_alpha: MixUp probability per batch and Beta(alpha, alpha) parameter.
        cutmix_p, cutmix_alpha: the same for CutMix (images (B, C, H, W) only).
        seed: seeds the private generator (numpy's, whose `beta` draws lam exactly);
            `reseed(epoch)` makes every epoch reproducible.
    """

    def __init__(
        self,
        n_classes: int,
        mixup_p: float = 0.0,
        mixup_alpha: float = 0.2,
        cutmix_p: float = 0.0,
        cutmix_alpha: float = 1.0,
        seed: int = 0,
    ):
        self.n_classes = n_classes
        self.mixup_p, self.mixup_alpha = mixup_p, mixup_alpha
        self.cutmix_p, self.cutmix_alpha = cutmix_p, cutmix_alpha
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    @property
    def active(self) -> bool:
        return self.mixup_p > 0 or self.cutmix_p > 0

    def reseed(self, epoch: int) -> None:
        self.rng = np.random.default_rng(self.seed * 100_003 + epoch)

    def soft_targets(self, y: torch.Tensor) -> torch.Tensor:
        if self.n_classes:
            return torch.nn.functional.one_hot(y.long(), self.n_classes).float()
        return y.float()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mixed inputs, soft targets); unmixed batches get one-hot targets."""
        target = self.soft_targets(y)
        draw = self.rng.random()
        if draw < self.cutmix_p:
            return self._cutmix(x, target)
        if draw < self.cutmix_p + self.mixup_p:
            return self._mixup(x, target)
        return x, target

    def _pairs(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(self.rng.permutation(n)).to(device)

    def _mixup(self, x, target):
        lam = float(self.rng.beta(self.mixup_alpha, self.mixup_alpha))
        perm = self._pairs(len(x), x.device)
        return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]

    def _cutmix(self, x, target):
        if x.dim() != 4:
            raise ValueError(f"CutMix needs images (B, C, H, W), got shape {tuple(x.shape)}")
        lam = float(self.rng.beta(self.cutmix_alpha, self.cutmix_alpha))
        perm = self._pairs(len(x), x.device)
        h, w = x.shape[-2:]
        cut_h, cut_w = round(h * math.sqrt(1 - lam)), round(w * math.sqrt(1 - lam))
        cy, cx = int(self.rng.integers(h)), int(self.rng.integers(w))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + (cut_h + 1) // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + (cut_w + 1) // 2, w)
        mixed = x.clone()
        mixed[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
        kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)  # the pasted area's true share
        return mixed, kept * target + (1 - kept) * target[perm]
