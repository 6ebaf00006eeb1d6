"""Image folders: one sub-folder per class, PNG/JPEG/..., grayscale or colour, any size.

Two passes keep memory bounded: headers first (mode, size, corrupt files found before any
pixel is decoded), then each image is decoded, converted, resized and appended, chunk by
chunk, to one uint8 `.npy` in a temporary folder (TMPDIR), which prepare reads rows from
(stages.common.splits.Rows): memory stays flat however many images there are.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stages.common import splits
from stages.common.preprocess import (
    GRAY_MODES,
    IMAGE_SUFFIXES,
    decode_image,
    own_pixel_limit,
)
from stages.prepare.sources.raw import RawData, fingerprint_files
from stages.runtime.errors import DataError
from stages.schema.data import DataParams

log = logging.getLogger("reprolab.sources")

SPLIT_NAMES = {"train", "training", "test", "testing", "val", "valid", "validation", "dev"}


def load_image_folder(root: Path, data: DataParams) -> RawData:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"{root}: no class folders found; expected one sub-folder per class "
            "(e.g. {root}/cat/*.png, {root}/dog/*.png)"
        )
    _refuse_split_layout(root, classes)
    files, labels, skipped = [], [], []
    for idx, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append(path)
                continue
            files.append(path)
            labels.append(idx)
    if skipped:
        log.warning("%s: skipped %d non-image file(s), e.g. %s", root, len(skipped), skipped[0])
    empty = [c for i, c in enumerate(classes) if i not in set(labels)]
    if not files:
        raise DataError(
            f"{root}: class folders {classes} hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if empty:
        log.warning("%s: class folder(s) with no images ignored: %s", root, empty)
    total = sum(p.stat().st_size for p in files)
    if total > data.max_bytes:
        raise DataError(
            f"{root}: {total:,} bytes of images exceeds data.max_bytes = {data.max_bytes:,}"
        )
    bad: list[str] = []
    modes, sizes, files, labels = _scan_headers(files, labels, data, bad)
    if not files:
        raise DataError(f"{root}: every image is unreadable; the first: {bad[0]}")
    channels = 1 if set(modes) <= GRAY_MODES else 3
    height, width = data.image_size or _most_common_size(sizes, root)
    X, keep = _decode_all(files, channels, (height, width), data, bad)
    if not keep.all():  # decode failures under skip: drop their rows
        X = splits.Subset(X, np.flatnonzero(keep))
        files = [f for f, k in zip(files, keep, strict=True) if k]
        labels = [v for v, k in zip(labels, keep, strict=True) if k]
    if bad:
        log.warning(
            "%s: skipped %d unreadable image(s) (data.on_bad_image: skip), e.g. %s",
            root, len(bad), bad[0],
        )  # fmt: skip
    if not files:
        raise DataError(f"{root}: every image is unreadable; the first: {bad[0]}")
    mixed = len(set(sizes)) > 1 or len(set(modes)) > 1
    notes = [f"{len(files)} images in {len(classes)} classes -> {channels}x{height}x{width}"]
    if mixed:
        notes.append(
            f"converted mixed modes {sorted(set(modes))} / sizes "
            f"{len(set(sizes))} distinct to one shape"
        )
    for note in notes:
        log.info("%s: %s", root.name, note)
    used = sorted(set(labels))
    remap = {old: new for new, old in enumerate(used)}
    y = np.fromiter((remap[v] for v in labels), dtype=np.int64, count=len(labels))
    return RawData(
        name=root.name,
        modality="image",
        X=X,
        y=y,
        fingerprint=fingerprint_files(files, root),
        task_hint="classification",
        classes=[classes[i] for i in used],
        notes=notes,
        image_scale=1.0 / 255.0,
        files=files,
        bad_files=bad,
    )


def _refuse_split_layout(root: Path, classes: list[str]) -> None:
    """`train/<class>/...`, `test/<class>/...` would become a model of the split names."""
    splits = [c for c in classes if c.lower() in SPLIT_NAMES]
    nested = [c for c in splits if any(p.is_dir() for p in (root / c).iterdir())]
    if nested and len(splits) == len(classes):
        inner = sorted(p.name for p in (root / nested[0]).iterdir() if p.is_dir())[:5]
        raise DataError(
            f"{root}: the top-level folders {classes} look like data splits, each holding "
            f"class folders (e.g. {nested[0]}/{{{', '.join(inner)}}}), not classes; point "
            f"data.source at one split's folder (e.g. {root / nested[0]}): the pipeline "
            "makes its own train/val/test split (data.val_size, data.test_size)"
        )


def _scan_headers(
    files: list[Path], labels: list[int], data: DataParams, bad: list[str]
) -> tuple[list[str], list[tuple[int, int]], list[Path], list[int]]:
    """(modes, sizes, files, labels) of the readable images. An empty or unreadable file
    raises naming it, or with `data.on_bad_image: skip` is left out and described in `bad`;
    an image over `data.max_image_pixels` always raises (a limit, not a broken file)."""
    modes, sizes, kept, kept_labels = [], [], [], []
    with own_pixel_limit():
        for path, label in zip(files, labels, strict=True):
            try:
                mode, size = _header(path)
            except DataError as exc:
                if data.on_bad_image == "error":
                    raise
                bad.append(str(exc))
                continue
            if size[0] * size[1] > data.max_image_pixels:
                h, w = size
                raise DataError(
                    f"{path}: {w}x{h} = {w * h:,} pixels exceeds data.max_image_pixels = "
                    f"{data.max_image_pixels:,}; shrink the image, remove it, or raise the limit"
                )
            modes.append(mode)
            sizes.append(size)
            kept.append(path)
            kept_labels.append(label)
    return modes, sizes, kept, kept_labels


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, (height, width)) from the file's header, or DataError naming the file."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); fix or remove it")
    try:
        with Image.open(path) as img:
            return img.mode, (img.height, img.width)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc}); fix or remove the file") from None


def _most_common_size(sizes: list[tuple[int, int]], root: Path) -> tuple[int, int]:
    (size, count), *_ = Counter(sizes).most_common(1)
    if count < len(sizes):
        log.warning(
            "%s: images have %d different sizes; resizing all to the most common %s "
            "(set data.image_size to choose)",
            root,
            len(set(sizes)),
            list(size),
        )
    return size


DECODE_CHUNK = 1024  # images decoded into memory before they are appended to the file


def _decode_all(
    files: list[Path], channels: int, size_hw: tuple[int, int], data: DataParams, bad: list[str]
) -> tuple[splits.Rows, np.ndarray]:
    """Decode every file into a temporary uint8 (N, C, H, W) `.npy` (rows that fail under
    `on_bad_image: skip` stay zero, and `keep` is False there); the folder is removed when
    the process exits, or at once on an error."""
    import atexit
    import shutil
    import tempfile

    from stages.common.progress import bar

    height, width = size_hw
    tmp = Path(tempfile.mkdtemp(prefix="reprolab-decode-"))
    atexit.register(shutil.rmtree, tmp, True)
    keep = np.ones(len(files), dtype=bool)
    spec = {"X": ((channels, height, width), np.uint8)}
    try:
        with (
            splits.Writer(tmp, len(files), spec, 1.0 / 255.0) as out,
            own_pixel_limit(),
            bar(total=len(files), desc="decode", unit=" images") as files_bar,
        ):
            for start in range(0, len(files), DECODE_CHUNK):
                chunk = files[start : start + DECODE_CHUNK]
                block = np.zeros((len(chunk), channels, height, width), dtype=np.uint8)
                for j, path in enumerate(chunk):
                    try:
                        block[j] = _decode(path, channels, (width, height))
                    except DataError as exc:
                        if data.on_bad_image == "error":
                            raise
                        keep[start + j] = False
                        bad.append(str(exc))
                out.write(X=block)
                files_bar.update(len(chunk))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return splits.open_split(tmp, "X")["X"], keep


def _decode(path: Path, channels: int, size_wh: tuple[int, int]) -> np.ndarray:
    try:
        return decode_image(path, channels, size_wh)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(
            f"{path}: image is corrupt or truncated ({exc}); fix or remove it"
        ) from None
