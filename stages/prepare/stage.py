"""prepare stage: read `data.source`, split, fit preprocessing on train, write the splits.

Outputs (one directory, written atomically): the splits `{train,val,test}/` (see
stages.common.splits: `.npy` arrays written chunk by chunk; `X` float32, or uint8 pixels
with their scale for image folders, and `y`), `schema.json` (task, classes, features,
input shape, fitted preprocessing and its statistics, source fingerprint) and, for
tables, `preprocessor.skops` (the fitted sklearn transformer, in skops' pickle-free format).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages import config
from stages.common import io, splits
from stages.common.preprocess import apply_arrays, column_type
from stages.prepare.sources.load import load_source
from stages.prepare.sources.raw import RawData
from stages.prepare.splitting import split_indices
from stages.prepare.targets import Target, resolve_target
from stages.runtime.cli import parser, path_field, run_main
from stages.runtime.errors import DataError

SECTIONS = ("seed", "data")
SPLITS = ("train", "val", "test")
EXAMPLE_ROWS = 3  # raw training rows kept in schema.json: the served model's input example
log = logging.getLogger("reprolab.prepare")


@dataclass
class Plan:
    """Everything validated about the data, before any output or MLflow run exists."""

    raw: RawData
    target: Target
    parts: dict[str, np.ndarray]
    started: float


def plan(cfg: config.Params, root: str | Path = ".") -> Plan:
    """Read the source, decide the task and split it; raises DataError on bad data."""
    started = time.perf_counter()
    raw = load_source(cfg.data, Path(root), cfg.seed)
    try:
        target = resolve_target(raw, cfg.data.task, cfg.data.max_classes)
        parts = split_indices(
            target.y, target.task, cfg.data.val_size, cfg.data.test_size, cfg.seed, target.classes
        )
    except DataError as exc:  # the target's problems, named by the file and column
        raise DataError(f"{_where(cfg.data, Path(root))}: {exc}") from None
    return Plan(raw, target, parts, started)


def _where(data, root: Path) -> str:
    """Where the target comes from: the file (and its column), folder or built-in."""
    if data.is_builtin:
        return f"built-in data set {data.source!r}"
    source = (root / data.source).resolve()
    return f"{source}, target column {data.target!r}" if data.target else str(source)


def run(
    cfg: config.Params,
    out_dir: str | Path,
    root: str | Path = ".",
    planned: Plan | None = None,
) -> dict[str, Any]:
    """Prepare the configured data into `out_dir`.

    Args:
        cfg: validated params (reads `seed` and `data`).
        out_dir: the stage's output directory (replaced atomically).
        root: folder that relative `data.source` paths are resolved from.
        planned: the result of `plan()`, if already computed.

    Returns:
        The metrics logged for the stage (rows per split, features, classes, seconds).
    """
    p = planned or plan(cfg, root)
    raw, target, parts, start = p.raw, p.target, p.parts, p.started
    with io.atomic_dir(out_dir) as tmp:
        schema = _write_splits(raw, target, parts, cfg, tmp)
        io.write_json(tmp / "schema.json", schema)
    metrics = {f"rows_{s}": len(parts[s]) for s in SPLITS}
    metrics["n_features"] = int(np.prod(schema["input_shape"]))
    metrics["seconds"] = round(time.perf_counter() - start, 3)
    if target.classes:
        metrics["n_classes"] = len(target.classes)
    if raw.files is not None:  # an image folder
        metrics["images_skipped"] = len(raw.bad_files)  # data.on_bad_image: skip
    log.info(
        "dataset=%s task=%s modality=%s shape=%s %s",
        raw.name,
        target.task,
        raw.modality,
        schema["input_shape"],
        " ".join(f"{k}={v}" for k, v in metrics.items()),
    )
    return metrics


def _write_splits(
    raw: RawData, target: Target, parts: dict[str, np.ndarray], cfg: config.Params, out: Path
) -> dict[str, Any]:
    if raw.modality == "table":
        prep, features = _write_table(raw, target, parts, cfg, out)
        shape = [len(features)]
    else:
        X, prep = _array_preprocessing(raw, parts["train"])
        prep.update(_serving_arrays(raw, parts["train"], out))
        keep_uint8 = prep["kind"] == "image" and X.dtype == np.uint8  # scaled per batch
        step = splits.chunk_rows(X[:1].nbytes * 4)
        for split in SPLITS:
            rows = parts[split]
            chunks = (
                (X[idx] if keep_uint8 else apply_arrays(X[idx], prep), target.y[idx])
                for idx in _row_chunks(rows, step)
            )
            _write_split(out / split, len(rows), chunks, prep["scale"] if keep_uint8 else None)
        shape = list(X.shape[1:])
        features = [f"f{i}" for i in range(shape[-1])] if raw.modality == "sequence" else []
    counts = {s: _class_counts(target, parts[s]) for s in SPLITS} if target.classes else None
    return {
        "dataset": raw.name,
        "source": cfg.data.source,
        "fingerprint": raw.fingerprint,
        "task": target.task,
        "modality": raw.modality,
        "classes": target.classes,
        "n_classes": len(target.classes) if target.classes else None,
        "input_shape": shape,
        "feature_names": features,
        "rows": {s: len(parts[s]) for s in SPLITS},
        "class_counts": counts,
        "target_stats": _target_stats(target, parts["train"]),
        "preprocessing": prep,
        "notes": raw.notes,
        "seed": cfg.seed,
        "data_params_hash": config.params_hash(cfg, *SECTIONS),  # validate: same data?
    }


def _write_table(
    raw: RawData, target: Target, parts: dict[str, np.ndarray], cfg: config.Params, out: Path
) -> tuple[dict[str, Any], list[str]]:
    """Fit on the train rows of the table's sample, then transform and write the rows a
    chunk at a time, each to its split (the table is never held whole)."""
    from stages.prepare import tabular
    from stages.prepare.sources.table_scan import table_rows

    table = table_rows(raw.X)
    fit_rows = np.isin(table.sample_rows, parts["train"])
    fitted, _ = tabular.fit_table(table.sample.loc[fit_rows], cfg.data)
    if int(fit_rows.sum()) < len(parts["train"]):
        log.info(
            "preprocessing fitted on a seeded sample of %d of %d train rows (data.sample_rows)",
            int(fit_rows.sum()),
            len(parts["train"]),
        )
    which = np.full(table.rows, -1, dtype=np.int8)
    for k, split in enumerate(SPLITS):
        which[parts[split]] = k
    spec = {"X": ((len(fitted.feature_names),), np.float32), "y": ((), target.y.dtype)}
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(splits.Writer(out / s, len(parts[s]), spec)) for s in SPLITS]
        for start, frame in table.chunks():
            X = tabular.transform(fitted, frame)
            y, rows = target.y[start : start + len(frame)], which[start : start + len(frame)]
            for k, writer in enumerate(writers):
                mine = rows == k
                writer.write(X=X[mine], y=y[mine])
    _save_transformer(fitted.transformer, out / "preprocessor.skops")
    prep: dict[str, Any] = {
        "kind": "table",
        "columns": table.columns,
        "numeric_mask": fitted.numeric_mask,
        **fitted.stats,
        "impute": cfg.data.impute.model_dump(),
        "encoding": cfg.data.categorical_encoding,
        "scaling": cfg.data.scaling,
        "fit_rows": int(fit_rows.sum()),
        **_serving_table(raw, table, parts["train"], cfg),
    }
    return prep, fitted.feature_names


def _row_chunks(rows: np.ndarray, step: int):
    for start in range(0, max(len(rows), 1), step):
        yield rows[start : start + step]


def _write_split(folder: Path, n: int, chunks, x_scale: float | None = None) -> None:
    """Write (X, y) chunks as the split `folder`; the first chunk gives the row shapes."""
    first_X, first_y = next(chunks)
    spec = {"X": (first_X.shape[1:], first_X.dtype), "y": (first_y.shape[1:], first_y.dtype)}
    with splits.Writer(folder, n, spec, x_scale) as out:
        out.write(X=first_X, y=first_y)
        for X, y in chunks:
            out.write(X=X, y=y)


def _array_preprocessing(raw: RawData, train: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    X = raw.X  # an image folder's rows stay on disk (a reader), arrays stay arrays
    if raw.modality == "image":
        return X, {"kind": "image", "scale": raw.image_scale or 1.0, "offset": 0.0}
    if raw.modality == "sequence":  # per-feature standardization with train statistics
        flat = X[train].reshape(-1, X.shape[-1]).astype(np.float64)
        mean, std = flat.mean(axis=0), flat.std(axis=0)
        std[std == 0] = 1.0
        return X, {"kind": "sequence", "mean": mean.tolist(), "scale": std.tolist()}
    raise AssertionError(f"unexpected modality {raw.modality}")


def _serving_table(raw: RawData, table, train: np.ndarray, cfg: config.Params) -> dict[str, Any]:
    """What the served model needs to take raw rows: columns, their types, an example."""
    example = table.take(train[:EXAMPLE_ROWS])
    return {
        "column_types": {c: column_type(table.sample[c]) for c in table.columns},
        "source_columns": raw.source_columns or table.columns,
        "target": cfg.data.target,
        "column_kinds": dict(cfg.data.columns),
        "example": json.loads(example.to_json(orient="split", index=False, date_format="iso")),
    }


def _serving_arrays(raw: RawData, train: np.ndarray, out: Path) -> dict[str, Any]:
    """Image folders: the decode settings, and one training image copied as the example."""
    if raw.files is None:
        return {"input": "arrays"}
    first = raw.files[int(train[0])]
    example = f"example_image{first.suffix.lower()}"
    (out / example).write_bytes(first.read_bytes())
    return {
        "input": "files",
        "channels": int(raw.X.shape[1]),
        "size": [int(raw.X.shape[2]), int(raw.X.shape[3])],
        "example": example,
    }


def _class_counts(target: Target, idx: np.ndarray) -> dict[str, int]:
    counts = np.bincount(target.y[idx], minlength=len(target.classes))
    return {c: int(n) for c, n in zip(target.classes, counts, strict=True)}


def _target_stats(target: Target, train: np.ndarray) -> dict[str, float] | None:
    if target.task != "regression":
        return None
    y = target.y[train].astype(np.float64)
    return {
        "mean": float(y.mean()),
        "std": float(y.std() or 1.0),
        "min": float(y.min()),
        "max": float(y.max()),
    }


def _save_transformer(transformer: Any, path: Path) -> None:
    from stages.common.skops_files import skops_io

    with io.atomic_file(path) as tmp:
        skops_io().dump(transformer, tmp)


@dataclass(frozen=True)
class Paths:
    """Every path the stage reads or writes, as `dvc.yaml` passes them."""

    out: Path = path_field("output folder: splits, schema.json, preprocessor")


def main(argv: list[str] | None = None) -> int:
    ap = parser("prepare", "Read data.source, split it and fit preprocessing on train.", Paths)

    def body(args):
        cfg = config.load(args.params)
        planned = plan(cfg, root=Path(args.params).resolve().parent)  # bad data fails here
        import mlflow

        from stages.runtime import tracking

        with tracking.stage_run(
            "prepare",
            cfg,
            SECTIONS,
            dataset=planned.raw.name,
            data_fingerprint=planned.raw.fingerprint,
        ):
            metrics = run(cfg, args.out, planned=planned)
            mlflow.log_metrics(metrics)
            mlflow.log_artifact(str(Path(args.out) / "schema.json"))

    return run_main("prepare", body, ap, argv)
