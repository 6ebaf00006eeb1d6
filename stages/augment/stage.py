"""augment stage: offline, seeded augmentation of the rows models are fit on.

Writes `train.npz` with the original rows followed by `multiplier - 1` augmented copies
(arrays `X`, `y`, `source_index`, `augmented`) and, for images, `samples.png`, a grid of
originals above their augmented versions. `val.npz` is the same for the val rows, with
their own seeds: it is read only by a refit (`train.fit_on: train+val`, see
`stages/common/fit_rows.py`); validation itself always scores the prepared val rows. Test is
never touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages import config
from stages.common import io
from stages.common.online_augment import image_spec, online_transform
from stages.runtime.cli import parser, path_field, run_main
from stages.schema.augment import AugmentParams

SECTIONS = ("seed", "augment")
log = logging.getLogger("reprolab.augment")


def run(cfg: config.Params, prepared: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Augment `prepared/{train,val}.npz` into `out_dir`. Returns the stage's metrics."""
    start = time.perf_counter()
    prepared = Path(prepared)
    schema = io.read_schema(prepared)
    aug = cfg.augment
    online = online_transform(cfg, schema) is not None  # refuses online for non-images
    copies = aug.multiplier - 1 if aug.enabled and not online else 0
    inputs = {name: io.load_npz(prepared / f"{name}.npz", "X", "y") for name in ("train", "val")}
    from stages.common.progress import bar

    total = copies * sum(len(rows["y"]) for rows in inputs.values())
    # one independent, reproducible stream per split and copy (multiplier <= 100); jitter is
    # scaled by the train split's feature spread for both
    with bar(desc="augment", unit=" rows", total=total) as rows_bar:
        splits = {
            name: _expand(
                rows["X"],
                rows["y"],
                schema,
                aug,
                copies,
                cfg.seed * 1000 + stream,
                inputs["train"]["X"],
                rows_bar.update,
            )
            for (name, rows), stream in zip(inputs.items(), (0, 500), strict=True)
        }
    with io.atomic_dir(out_dir) as tmp:
        for name, arrays in splits.items():
            io.save_npz(tmp / f"{name}.npz", **arrays)
        n, out = len(inputs["train"]["y"]), splits["train"]["X"]
        if schema["modality"] == "image" and copies and aug.sample_grid:
            _sample_grid(out[:n], out[n : 2 * n], aug.sample_grid, tmp / "samples.png")
        elif online and aug.sample_grid:  # what the training loop will see, for a look
            from lightning_modules.image_augment import augment_images

            shown = out[: aug.sample_grid]
            preview = augment_images(shown, image_spec(aug), cfg.seed * 1000)
            _sample_grid(shown, preview, aug.sample_grid, tmp / "samples.png")
    metrics = {
        "rows_in": n,
        "rows_out": len(splits["train"]["y"]),
        "val_rows_out": len(splits["val"]["y"]),
        "copies": copies,
        "online": int(online),
        "seconds": round(time.perf_counter() - start, 3),
    }
    log.info(" ".join(f"{k}={v}" for k, v in metrics.items()))
    return metrics


def _expand(
    X: np.ndarray,
    y: np.ndarray,
    schema: dict[str, Any],
    aug: AugmentParams,
    copies: int,
    seed: int,
    reference: np.ndarray,
    on_rows: Callable[[int], object],
) -> dict[str, np.ndarray]:
    """The rows followed by `copies` augmented copies, with their source row and flag;
    `on_rows(n)` is told of every n rows augmented (the progress bar)."""
    parts_X, parts_y = [X], [y]
    for copy in range(copies):
        Xa, ya = _augment_once(X, y, schema, aug, seed + copy, reference, on_rows)
        parts_X.append(Xa)
        parts_y.append(ya)
    return {
        "X": np.concatenate(parts_X),
        "y": np.concatenate(parts_y),
        "source_index": np.tile(np.arange(len(X)), copies + 1),
        "augmented": np.repeat(np.arange(copies + 1) > 0, len(X)),
    }


def _augment_once(
    X: np.ndarray,
    y: np.ndarray,
    schema: dict[str, Any],
    aug: AugmentParams,
    seed: int,
    reference: np.ndarray,
    on_rows: Callable[[int], object],
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented copy of X; `reference` (the train rows) sets the jitter's scale."""
    if schema["modality"] == "image":
        from lightning_modules.image_augment import augment_images

        return augment_images(X, image_spec(aug), seed, on_chunk=on_rows), y.copy()
    rng = np.random.default_rng(seed)
    t = aug.tabular
    if schema["modality"] == "table":
        mask = np.asarray(schema["preprocessing"]["numeric_mask"], dtype=np.float32)
    else:
        mask = np.ones(X.shape[-1], dtype=np.float32)
    out_X, out_y = X, y
    if t.jitter.enabled and t.jitter.p > 0:
        axes = tuple(range(X.ndim - 1))
        feature_std = reference.std(axis=axes).astype(np.float32)
        out_X = _jitter(out_X, rng, t.jitter.p, t.jitter.std, feature_std, mask)
    if t.mixup.enabled and t.mixup.p > 0:
        from stages.augment.tabular import mixup_same_class

        out_X, out_y = mixup_same_class(
            out_X, out_y, rng, t.mixup.p, t.mixup.alpha, schema["task"] == "classification"
        )
    on_rows(len(X))
    return out_X, (out_y if out_y is not y else y.copy())


def _jitter(X, rng, p, std, feature_std, mask):
    from stages.augment.tabular import jitter

    return jitter(X, rng, p, std, feature_std, mask)


def _sample_grid(before: np.ndarray, after: np.ndarray, n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(before))
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 2.9), squeeze=False)
    for i in range(n):
        for row, imgs in enumerate((before, after)):
            img = imgs[i]
            ax = axes[row][i]
            ax.imshow(
                img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0),
                cmap="gray" if img.shape[0] == 1 else None,
                vmin=0,
                vmax=1,
            )
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][i].set_title(f"#{i}", fontsize=8)
    axes[0][0].set_ylabel("original", fontsize=8)
    axes[1][0].set_ylabel("augmented", fontsize=8)
    fig.tight_layout()
    with io.atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


@dataclass(frozen=True)
class Paths:
    """Every path the stage reads or writes, as `dvc.yaml` passes them."""

    prepared: Path = path_field("prepare stage output")
    out: Path = path_field("output folder: augmented train/val")


def main(argv: list[str] | None = None) -> int:
    ap = parser("augment", "Offline, seeded augmentation of the training split.", Paths)

    def body(args):
        cfg = config.load(args.params)
        schema = io.read_schema(Path(args.prepared))
        import mlflow

        from stages.runtime import tracking, tracking_inputs

        with tracking.stage_run(
            "augment",
            cfg,
            SECTIONS,
            schema=schema,
            inputs=[args.prepared],
        ):
            prepared = Path(args.prepared)
            splits = {name: [prepared / f"{name}.npz"] for name in ("train", "val")}
            tracking_inputs.log_splits(schema["dataset"], splits)
            metrics = run(cfg, args.prepared, args.out)
            mlflow.log_metrics(metrics)
            grid = Path(args.out) / "samples.png"
            if grid.exists():
                mlflow.log_artifact(str(grid))

    return run_main("augment", body, ap, argv)
