"""augment stage: offline, seeded augmentation of the rows models are fit on.

Writes the split `train/` (stages.common.splits, chunk by chunk: no copy is ever whole in
memory) with the original rows followed by `multiplier - 1` augmented copies (arrays `X`,
`y`, `source_index`, `augmented`; images stay uint8) and, for images, `samples.png`, a grid
of originals above their augmented versions. `val/` is the same for the val rows, with
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
from stages.common import io, splits
from stages.common.online_augment import image_spec, online_transform
from stages.runtime.cli import parser, path_field, run_main
from stages.schema.augment import AugmentParams

SECTIONS = ("seed", "augment")
log = logging.getLogger("reprolab.augment")


def run(cfg: config.Params, prepared: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Augment the prepared train and val splits into `out_dir`. Returns the stage's metrics."""
    start = time.perf_counter()
    prepared = Path(prepared)
    schema = io.read_schema(prepared)
    aug = cfg.augment
    online = online_transform(cfg, schema) is not None  # refuses online for non-images
    copies = aug.multiplier - 1 if aug.enabled and not online else 0
    inputs = {name: splits.open_split(prepared / name, "X", "y") for name in ("train", "val")}
    scale = splits.x_scale(prepared / "train")
    # the jitter's scale is the train split's feature spread (tables and sequences, float)
    reference = None
    if schema["modality"] != "image" and copies and aug.tabular.jitter.enabled:
        from stages.augment.tabular import feature_std

        reference = feature_std(inputs["train"]["X"].chunks())
    from stages.common.progress import bar

    total = copies * sum(len(rows["y"]) for rows in inputs.values())
    with bar(desc="augment", unit=" rows", total=total) as rows_bar, io.atomic_dir(out_dir) as tmp:
        # one independent, reproducible stream per split and copy (multiplier <= 100)
        for (name, rows), stream in zip(inputs.items(), (0, 500), strict=True):
            _write_expanded(
                tmp / name,
                rows,
                scale,
                _Copies(schema, aug, copies, cfg.seed * 1000 + stream, reference),
                rows_bar.update,
            )
        n = len(inputs["train"]["y"])
        if schema["modality"] == "image" and aug.sample_grid and (copies or online):
            written = splits.open_split(tmp / "train", "X")["X"]
            k = min(aug.sample_grid, n)
            shown = splits.to_float(written[:k], scale)
            if copies:
                after = splits.to_float(written[n : n + k], scale)
            else:  # online: what the training loop will see, for a look
                from lightning_modules.image_augment import augment_images

                after = augment_images(shown, image_spec(aug), cfg.seed * 1000)
            _sample_grid(shown, after, aug.sample_grid, tmp / "samples.png")
    n_val = len(inputs["val"]["y"])
    metrics = {
        "rows_in": n,
        "rows_out": n * (copies + 1),
        "val_rows_out": n_val * (copies + 1),
        "copies": copies,
        "online": int(online),
        "seconds": round(time.perf_counter() - start, 3),
    }
    log.info(" ".join(f"{k}={v}" for k, v in metrics.items()))
    return metrics


@dataclass(frozen=True)
class _Copies:
    """How the augmented copies of one split are made: `copies` of them, copy i seeded
    `seed + i`; `reference` sets the tabular jitter's scale."""

    schema: dict[str, Any]
    aug: AugmentParams
    copies: int
    seed: int
    reference: np.ndarray | None  # the train split's per-feature std (tables, sequences)


def _write_expanded(
    folder: Path,
    rows: dict[str, splits.Rows],
    scale: float | None,
    how: _Copies,
    on_rows: Callable[[int], object],
) -> None:
    """The split's rows followed by its augmented copies, with each row's source index and
    an augmented flag, written chunk by chunk: no copy is concatenated in memory, and an
    image copy is never whole in memory either; `on_rows(n)` is told of every n rows."""
    X, y = rows["X"], np.asarray(rows["y"])
    n = len(y)
    spec = {
        "X": (X.row_shape, X.dtype),
        "y": (y.shape[1:], y.dtype),
        "source_index": ((), np.int64),
        "augmented": ((), np.bool_),
    }
    with splits.Writer(folder, n * (how.copies + 1), spec, scale) as out:
        for part in X.chunks():
            start = out.written["X"]
            out.write(
                X=part,
                y=y[start : start + len(part)],
                source_index=np.arange(start, start + len(part)),
                augmented=np.zeros(len(part), bool),
            )
        for copy in range(how.copies):
            for lo, hi, Xa, ya in _augment_once(X, y, how, how.seed + copy, scale):
                out.write(
                    X=_stored(Xa, X.dtype, scale),
                    y=ya,
                    source_index=np.arange(lo, hi),
                    augmented=np.ones(hi - lo, bool),
                )
                on_rows(hi - lo)


def _stored(X: np.ndarray, dtype: np.dtype, scale: float | None) -> np.ndarray:
    """Augmented float rows back in the split's stored dtype (uint8 pixels: rounded)."""
    if dtype == np.uint8:
        factor = np.float32(scale if scale is not None else 1 / 255)
        return np.clip(np.rint(X / factor), 0, 255).astype(np.uint8)
    return X.astype(dtype, copy=False)


def _augment_once(X: splits.Rows, y: np.ndarray, how: _Copies, seed: int, scale: float | None):
    """One augmented copy of the rows, as (start, stop, X, y) chunks."""
    schema, aug = how.schema, how.aug
    if schema["modality"] == "image":
        from lightning_modules.image_augment import iter_augmented

        for lo, hi, Xa in iter_augmented(X, image_spec(aug), seed, scale=scale):
            yield lo, hi, Xa, y[lo:hi]
        return
    from stages.augment import tabular

    t = aug.tabular
    rng_jitter, rng_mixup = np.random.default_rng(seed).spawn(2)
    if schema["modality"] == "table":
        mask = np.asarray(schema["preprocessing"]["numeric_mask"], dtype=np.float32)
    else:
        mask = np.ones(X.row_shape[-1], dtype=np.float32)
    jitter_on = t.jitter.enabled and t.jitter.p > 0
    plan = None
    if t.mixup.enabled and t.mixup.p > 0:
        classification = schema["task"] == "classification"
        plan = tabular.plan_mixup(y, rng_mixup, t.mixup.p, t.mixup.alpha, classification)
    start = 0
    for part in X.chunks():  # tables and sequences: a chunk at a time, like images
        stop = start + len(part)
        out_X, out_y = part.astype(np.float32, copy=False), y[start:stop]
        if jitter_on:
            out_X = tabular.jitter(out_X, rng_jitter, t.jitter.p, t.jitter.std, how.reference, mask)
        if plan is not None:
            out_X, out_y = tabular.apply_mixup(out_X, out_y, start, plan, X.take, y)
        yield start, stop, out_X, out_y
        start = stop


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
            splits_read = {name: [prepared / name] for name in ("train", "val")}
            tracking_inputs.log_splits(schema["dataset"], splits_read)
            metrics = run(cfg, args.prepared, args.out)
            mlflow.log_metrics(metrics)
            grid = Path(args.out) / "samples.png"
            if grid.exists():
                mlflow.log_artifact(str(grid))

    with config.without_estimator_checks():  # validate and baselines check them
        return run_main("augment", body, ap, argv)
