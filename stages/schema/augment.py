"""`augment:` section: seeded augmentation of the training split, offline (copies written by
the augment stage) or online (images, per batch in the training loop)."""

from typing import Literal

from pydantic import Field, model_validator

from stages.schema.base import Section, Toggle


class Rotation(Toggle):
    degrees: float = Field(10.0, ge=0.0, le=180.0)


class Flip(Toggle):
    enabled: bool = False


class Affine(Toggle):
    translate: float = Field(0.1, ge=0.0, lt=1.0)
    scale: tuple[float, float] = (0.9, 1.1)

    @model_validator(mode="after")
    def _scale_range(self):
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ValueError(f"scale must be [low, high] with 0 < low <= high, got {[lo, hi]}")
        return self


class Color(Toggle):
    brightness: float = Field(0.2, ge=0.0, le=1.0)
    contrast: float = Field(0.2, ge=0.0, le=1.0)


class Noise(Toggle):
    p: float = Field(0.3, ge=0.0, le=1.0)
    std: float = Field(0.03, ge=0.0)


class Erasing(Toggle):
    p: float = Field(0.25, ge=0.0, le=1.0)
    scale: tuple[float, float] = (0.02, 0.12)

    @model_validator(mode="after")
    def _scale_range(self):
        lo, hi = self.scale
        if not 0 < lo <= hi < 1:
            raise ValueError(f"scale must be [low, high] with 0 < low <= high < 1, got {[lo, hi]}")
        return self


class ImageAugment(Section):
    rotation: Rotation = Rotation()
    hflip: Flip = Flip()
    vflip: Flip = Flip()
    affine: Affine = Affine()
    color: Color = Color()
    noise: Noise = Noise()
    erasing: Erasing = Erasing()


class Jitter(Toggle):
    std: float = Field(0.05, ge=0.0, description="noise std as a fraction of each feature's std")


class TabularMixup(Toggle):
    alpha: float = Field(0.4, gt=0.0)


class TabularAugment(Section):
    jitter: Jitter = Jitter()
    mixup: TabularMixup = TabularMixup(p=0.3)


class AugmentParams(Section):
    enabled: bool = True
    mode: Literal["offline", "online"] = Field(
        "offline",
        description="offline: this stage writes multiplier-1 augmented copies; online: images "
        "get the same transforms per train batch in the training loop (no copies on disk)",
    )
    multiplier: int = Field(2, ge=1, le=100, description="rows out per training row in")
    image: ImageAugment = ImageAugment()
    tabular: TabularAugment = TabularAugment()
    sample_grid: int = Field(8, ge=0, le=64, description="samples in the before/after PNG")
