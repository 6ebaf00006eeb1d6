"""baselines stage: fit the scikit-learn models listed in `baselines.models`, score them on val.

Each model is saved as `<name>.skops` (skops' pickle-free format: loading refuses any type
not on an explicit allowlist, unlike joblib/pickle, which runs arbitrary code) as one
Pipeline that carries the fitted preprocessing: the table's ColumnTransformer from
`data/prepared/preprocessor.skops` (step "preprocess", so the pipeline accepts raw rows), or
a flatten step for images and sequences. `index.json` lists the models with their
hyperparameters and MLflow run ids. Every model gets feature importances (CSV + PNG): tree
models their impurity importances, the others sklearn's permutation importance on val.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from stages import config
from stages.baselines import cores, permutation, rows, size_budget
from stages.baselines.tracking import jsonable
from stages.common import fit_rows, io, splits
from stages.common.scores import default_headline, score
from stages.common.skops_files import load_trusted, save_model
from stages.runtime.cli import parser, path_field, paths_from, run_main
from stages.runtime.errors import UserError
from stages.schema.baselines import ESTIMATORS, make_estimator

log = logging.getLogger("reprolab.baselines")

SECTIONS = ("seed", "baselines")


# called once per fitted model: (name, pipeline, result, X_val, the pipeline's skops types
# outside skops' defaults) -> MLflow run id or None
ModelLogger = Callable[[str, Any, dict[str, Any], np.ndarray, list[str]], str | None]


@dataclass(frozen=True)
class Paths:
    """Every path the stage reads or writes, as `dvc.yaml` passes them."""

    prepared: Path = path_field("prepare stage output (splits, schema.json, preprocessor)")
    augmented: Path = path_field("augment stage output, read when baselines.use_augmented")
    out: Path = path_field("<name>.skops + index.json (replaced atomically)")
    metrics: Path = path_field("val metrics and fit seconds per model")
    importance: Path = path_field("feature-importance CSV + PNG per tree model")


def run(cfg: config.Params, paths: Paths, log_model: ModelLogger | None = None) -> dict[str, Any]:
    """Fit, score and save every listed baseline that has a variant for the task.

    Args:
        cfg: validated params (reads `seed` and `baselines`).
        paths: inputs and outputs (see `Paths`).
        log_model: optional per-model hook (the MLflow nested run in `main`).

    Returns:
        {name: val metrics + fit_seconds + fit_rows} for the models that ran.
    """
    prepared, augmented, out_dir = paths.prepared, paths.augmented, paths.out
    metrics_path, importance_dir = paths.metrics, paths.importance
    schema = io.read_schema(prepared)
    task = schema["task"]
    train_dir = Path(augmented) if cfg.baselines.use_augmented else prepared
    # the same rows as the network (train.fit_on), so the leaderboard compares like with like
    # X stays on disk: each model reads the rows it is fit on (all, or its capped sample)
    X_fit, y_fit, scale, fit_files = fit_rows.open_rows(train_dir, cfg.train.fit_on)
    train = _FitRows(X_fit, y_fit, scale)
    val = splits.load(prepared / "val", "X", "y")
    log.info(fit_rows.describe(cfg.train.fit_on, fit_files, len(y_fit)))
    if schema["modality"] == "sequence":
        log.info("note: sequences are flattened to (rows, steps*features) for the baselines")
    head = _head(schema, prepared)
    names = [n for n in cfg.baselines.models if task in ESTIMATORS[n]]
    skipped = [n for n in cfg.baselines.models if n not in names]
    if skipped:
        log.info("note: no %s variant, skipped: %s", task, ", ".join(skipped))
    if not names:
        raise UserError(
            f"baselines.models = {cfg.baselines.models!r}: none has a {task} variant; "
            f"choose from {', '.join(n for n in ESTIMATORS if task in ESTIMATORS[n])}"
        )
    results: dict[str, dict[str, Any]] = {}
    index: dict[str, Any] = {
        "task": task,
        "dataset": schema["dataset"],
        "fit_on": cfg.train.fit_on,
        "fit_rows": len(y_fit),
        "max_rows": cfg.baselines.max_rows,
        "models": {},
    }
    free = cores.FreeCores()
    with io.atomic_dir(out_dir) as tmp, io.atomic_dir(importance_dir) as imp:
        for i, name in enumerate(names, 1):
            hp = cfg.baselines.hyperparams.get(name, {})
            est = make_estimator(name, task, hp, seed=cfg.seed, modality=schema["modality"])
            X, y = _capped(train, name, task, cfg)
            threads = cores.threads(cfg.baselines.n_threads, free)
            start = time.perf_counter()
            model, note = size_budget.grow_within(
                est, X, y, cfg.baselines.max_model_mb, partial(fit, threads=threads), name
            )
            fit_s = time.perf_counter() - start
            if note:
                log.info(note)
            with threads.limit():
                result = _val_metrics(task, model, val, schema)
            result["fit_seconds"] = round(fit_s, 3)
            result["fit_rows"] = len(y)
            pipe = _pipeline(head, model)
            types = save_model(pipe, tmp / f"{name}.skops")
            file_mb = (tmp / f"{name}.skops").stat().st_size / 2**20
            values, kind = _importance_values(model, val, cfg, threads)
            if values is not None:
                _importances(name, values, kind, schema, imp, cfg.baselines.importance_top)
            run_id = log_model(name, pipe, result, val["X"], types) if log_model else None
            results[name] = result
            index["models"][name] = {
                "file": f"{name}.skops",
                "estimator": type(model).__name__,
                "fit_rows": len(y),
                "threads": threads.n,
                "blas_threads": threads.blas,
                "file_mb": round(file_mb, 3),
                "hyperparams": jsonable(model.get_params(deep=False)),
                "mlflow_run_id": run_id,
            }
            metric = default_headline(task)
            log.info(
                "[%d/%d] model=%s val_%s=%.4f fit_s=%.2f threads=%d file_mb=%.1f",
                i, len(names), name, metric, result[metric] or float("nan"), fit_s, threads.n,
                file_mb,
            )  # fmt: skip
        io.write_json(tmp / "index.json", index)
    io.write_json(metrics_path, results)
    return results


def fit(est: Any, X: np.ndarray, y: np.ndarray, threads: cores.Threads) -> Any:
    """`est.fit(X, y)` on `threads`: OpenMP and BLAS threads, and joblib workers for the
    estimators with `n_jobs` (forests, knn) unless the hyperparameters set it. The models fit
    one after another, each on the threads `cores.threads` gave it."""
    if est.get_params().get("n_jobs", 0) is None and type(est).__name__ != "LogisticRegression":
        est.set_params(n_jobs=threads.n)
    with threads.limit():
        return est.fit(X, y)


class _FitRows:
    """The fit rows on disk, read once per row cap: models with the same cap (all rows, or
    `max_rows`) share one float32 copy, and only the sampled rows are ever read."""

    def __init__(self, X: Any, y: np.ndarray, scale: float | None):
        self.X, self.y, self.scale = X, y, scale
        self.cached: tuple[int | None, np.ndarray, np.ndarray] | None = None

    def rows(self, n: int | None, task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        n = None if n is None or n >= len(self.y) else n
        if self.cached is None or self.cached[0] != n:
            self.cached = None  # the previous cap's copy goes before the next is read
            keep = np.arange(len(self.y)) if n is None else rows.sample(self.y, n, task, seed)
            X = splits.to_float(np.asarray(self.X[keep]), self.scale)
            self.cached = (n, _flat(X), self.y[keep])
        return self.cached[1], self.cached[2]


def _capped(train: _FitRows, name: str, task: str, cfg) -> tuple[Any, Any]:
    """The (flattened) train rows of model `name`: a seeded sample when over its row cap."""
    n = rows.cap(cfg.baselines, name)
    if n is not None and len(train.y) > n:
        how = "stratified" if task == "classification" else "uniform"
        log.info(
            "model=%s fit_rows=%d of %d: a seeded %s sample (row cap)", name, n, len(train.y), how
        )
    return train.rows(n, task, cfg.seed)


def _flat(X: np.ndarray) -> np.ndarray:
    return X.reshape(len(X), -1)


def _head(schema: dict[str, Any], prepared: Path) -> tuple[str, Any]:
    """The preprocessing step that turns what a user has into the model's 2-D input."""
    from sklearn.preprocessing import FunctionTransformer

    if schema["modality"] == "table":
        return "preprocess", load_trusted(prepared / "preprocessor.skops")
    width = int(np.prod(schema["input_shape"]))
    return "flatten", FunctionTransformer(np.reshape, kw_args={"shape": (-1, width)})


def _pipeline(head: tuple[str, Any], model: Any) -> Any:
    from sklearn.pipeline import Pipeline

    return Pipeline([head, ("model", model)])


def _val_metrics(task, model, val, schema) -> dict[str, Any]:
    X = _flat(val["X"])
    proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
    m = score(task, val["y"], model.predict(X), proba, schema.get("classes"))
    m.pop("per_class", None)
    return m


def _importance_values(model, val, cfg, threads: cores.Threads) -> tuple[np.ndarray | None, str]:
    """Impurity importances of a tree model, else sklearn's permutation importance (scored in
    a few large predicts, `permutation.py`): the drop in the model's own val score (accuracy
    / R²) when one feature's column is shuffled, averaged over `baselines.permutation_repeats`
    shuffles of at most `permutation_rows` seeded val rows. (None, "") when the model has
    neither (permutation_repeats: 0)."""
    if hasattr(model, "feature_importances_"):
        return np.asarray(model.feature_importances_, dtype=np.float64), "impurity"
    b = cfg.baselines
    if not b.permutation_repeats:
        return None, ""
    rng = np.random.default_rng(cfg.seed)
    n = len(val["y"])
    rows = np.sort(rng.choice(n, size=min(n, b.permutation_rows), replace=False))
    with threads.limit():
        X, y = _flat(val["X"][rows]), val["y"][rows]
        values = permutation.importances(model, X, y, b.permutation_repeats, cfg.seed, threads.n)
    return np.asarray(values, dtype=np.float64), "permutation"


def _importances(name, values, kind: str, schema, out: Path, top: int) -> None:
    from stages.baselines.importance import feature_names, plot_importances

    names = feature_names(schema, len(values))
    order = np.argsort(-values, kind="stable")
    with io.atomic_file(out / f"{name}.csv") as tmp:
        lines = ["feature,importance,kind"]
        lines += [f"{names[i]},{values[i]:.6g},{kind}" for i in order]
        tmp.write_text("\n".join(lines) + "\n")
    plot_importances(name, values, names, schema, top, out / f"{name}.png", kind)


def main(argv: list[str] | None = None) -> int:
    ap = parser("baselines", "Fit the scikit-learn baselines and score them on val.", Paths)

    def body(args):
        cfg = config.load(args.params)
        schema = io.read_schema(Path(args.prepared))
        import mlflow

        from stages.baselines.tracking import baseline_logger
        from stages.runtime import tracking, tracking_inputs

        inputs = [args.prepared] + ([args.augmented] if cfg.baselines.use_augmented else [])
        source = Path(inputs[-1])
        with tracking.stage_run(
            "baselines",
            cfg,
            SECTIONS,
            schema=schema,
            inputs=inputs,
        ):
            read = fit_rows.splits(source, Path(args.prepared), cfg.train.fit_on)
            tracking_inputs.log_splits(schema["dataset"], read)
            mlflow.set_tag("fit_on", cfg.train.fit_on)
            mlflow.log_param("train.fit_on", cfg.train.fit_on)  # the rows, as for train
            results = run(cfg, paths_from(args, Paths), log_model=baseline_logger())
            mlflow.log_metrics(
                {f"{n}.{k}": v for n, m in results.items() for k, v in m.items() if v is not None}
            )
            mlflow.log_artifact(args.metrics)
            if Path(args.importance).exists():
                mlflow.log_artifacts(args.importance, "importance")

    return run_main("baselines", body, ap, argv)
