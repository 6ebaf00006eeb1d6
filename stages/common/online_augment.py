"""`augment.mode: online`: the kornia image pipeline of `augment.image`, run on each train
batch in the training loop (lightning_modules.image_augment.OnlineAugment) instead of
copies written by the augment stage. Shared by the augment stage (which then writes no
copies) and train / tune trials (which apply it)."""

from __future__ import annotations

from typing import Any

from stages import config
from stages.schema.augment import AugmentParams


def online_transform(cfg: config.Params, schema: dict[str, Any]):
    """The per-batch augmentation of `augment.mode: online` (None when offline or off);
    online is for images, whose transforms run on the device."""
    aug = cfg.augment
    if not aug.enabled or aug.mode != "online":
        return None
    if schema["modality"] != "image":
        from stages.runtime.errors import UserError

        raise UserError(
            f"augment.mode: online transforms image batches in the training loop, but "
            f"{schema['dataset']} is a {schema['modality']} data set; use augment.mode: "
            "offline (jitter / mixup copies written by the augment stage)"
        )
    from lightning_modules.image_augment import OnlineAugment

    return OnlineAugment(image_spec(aug), cfg.seed)


def image_spec(aug: AugmentParams):
    """The kornia pipeline's description from the `augment.image` params."""
    from lightning_modules.image_augment import ImageAugmentSpec

    im = aug.image

    def p(t):
        return t.p if t.enabled else 0.0

    return ImageAugmentSpec(
        rotation_p=p(im.rotation),
        rotation_degrees=im.rotation.degrees,
        hflip_p=p(im.hflip),
        vflip_p=p(im.vflip),
        affine_p=p(im.affine),
        translate=im.affine.translate,
        scale=im.affine.scale,
        color_p=p(im.color),
        brightness=im.color.brightness,
        contrast=im.color.contrast,
        noise_p=p(im.noise),
        noise_std=im.noise.std,
        erasing_p=p(im.erasing),
        erasing_scale=im.erasing.scale,
    )
