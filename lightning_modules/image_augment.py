"""Offline image augmentation with kornia, seeded without touching global RNG state."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ImageAugmentSpec:
    """Plain description of the pipeline; a transform with p == 0 is left out."""

    rotation_p: float = 0.0
    rotation_degrees: float = 10.0
    hflip_p: float = 0.0
    vflip_p: float = 0.0
    affine_p: float = 0.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.9, 1.1)
    color_p: float = 0.0
    brightness: float = 0.2
    contrast: float = 0.2
    noise_p: float = 0.0
    noise_std: float = 0.03
    erasing_p: float = 0.0
    erasing_scale: tuple[float, float] = (0.02, 0.12)


def build_pipeline(spec: ImageAugmentSpec) -> torch.nn.Module:
    import kornia.augmentation as K

    steps: list[torch.nn.Module] = []
    if spec.rotation_p:
        steps.append(K.RandomRotation(spec.rotation_degrees, p=spec.rotation_p))
    if spec.hflip_p:
        steps.append(K.RandomHorizontalFlip(p=spec.hflip_p))
    if spec.vflip_p:
        steps.append(K.RandomVerticalFlip(p=spec.vflip_p))
    if spec.affine_p:
        steps.append(
            K.RandomAffine(
                0.0, translate=(spec.translate, spec.translate), scale=spec.scale, p=spec.affine_p
            )
        )
    if spec.color_p and (spec.brightness or spec.contrast):
        steps.append(
            K.ColorJiggle(brightness=spec.brightness, contrast=spec.contrast, p=spec.color_p)
        )
    if spec.noise_p:
        steps.append(K.RandomGaussianNoise(std=spec.noise_std, p=spec.noise_p))
    if spec.erasing_p:
        steps.append(K.RandomErasing(scale=spec.erasing_scale, p=spec.erasing_p))
    return K.AugmentationSequential(*steps) if steps else torch.nn.Identity()


def augment_images(
    images: np.ndarray,
    spec: ImageAugmentSpec,
    seed: int,
    chunk: int = 4096,
    on_chunk: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Augment (N, C, H, W) float images in [0, 1]; same seed -> same output.
    `on_chunk(rows)` is called after each chunk (a progress bar's `update`)."""
    out = np.empty(images.shape, dtype=np.float32)
    for start, stop, batch in iter_augmented(images, spec, seed, chunk):
        out[start:stop] = batch
        if on_chunk is not None:
            on_chunk(stop - start)
    return out


def iter_augmented(
    images, spec: ImageAugmentSpec, seed: int, chunk: int = 4096, scale: float | None = None
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, augmented float32 rows) chunk by chunk, so a caller can write each
    chunk out and never hold the whole copy; `images` is float in [0, 1], or stored uint8
    pixels times `scale`. Same seed -> same output as `augment_images`.

    kornia samples from torch's global generator, so sampling runs inside
    `torch.random.fork_rng`, which restores the caller's RNG state afterwards (between
    chunks too: the caller's own torch calls neither see nor shift this stream).
    """
    pipeline = build_pipeline(spec)
    state = None
    for start, stop in _chunks(len(images), chunk):
        rows = np.asarray(images[start:stop])
        if rows.dtype == np.uint8:
            rows = rows.astype(np.float32) * np.float32(scale if scale is not None else 1 / 255)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            if state is None:
                torch.manual_seed(seed)
            else:
                torch.set_rng_state(state)
            batch = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
            out = pipeline(batch).clamp_(0.0, 1.0).numpy()
            state = torch.get_rng_state()
        yield start, stop, out


class OnlineAugment:
    """The same kornia pipeline on each train batch, on the batch's device (online mode).

    Seeded by (seed, epoch, rank, batch index) through `numpy.random.SeedSequence`, inside
    `torch.random.fork_rng`, so a batch's augmentation does not depend on what ran before
    it: two runs, or a run resumed mid-way, see the same augmented batches.
    """

    def __init__(self, spec: ImageAugmentSpec, seed: int):
        self.pipeline, self.seed = build_pipeline(spec), seed

    def __call__(self, X: torch.Tensor, epoch: int, rank: int, index: int) -> torch.Tensor:
        seed = int(np.random.SeedSequence([self.seed, epoch, rank, index]).generate_state(1)[0])
        devices = [X.device] if X.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            return self.pipeline(X).clamp_(0.0, 1.0)


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)
