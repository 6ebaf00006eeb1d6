"""compress stage: pruned, INT8 and distilled variants of the trained network, measured.

Reads models/model.pt, the train split (fine-tuning, distillation, calibration) and the val
split (metric and latency rows). Writes `models/compressed/<variant>.{pt,onnx}` (evaluate
scores them all on the test split), `metrics/compression.json` (one row per variant, keyed
by name) and `plots/compression.csv`. A variant that fails (an op ONNX Runtime cannot
quantize, an arch structured pruning does not cover) becomes a `failed` row with the
reason; the others still finish. A variant that falls to the trivial predictor's quality
(val skill <= `compress.degenerate_skill` where the original's is above) becomes a
`degenerate` row with the reason, and its file is not shipped, so evaluate and package never
see it. MLflow: one compress run, one nested run per variant.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages import config
from stages.common import fit_rows, io, splits
from stages.runtime import signals
from stages.runtime.cli import parser, path_field, paths_from, run_main
from stages.runtime.errors import UserError

SECTIONS = ("seed", "compress")
log = logging.getLogger("reprolab.compress")
CSV_COLUMNS = (
    "variant",
    "method",
    "status",
    "runtime",
    "params",
    "nonzero_params",
    "macs",
    "bytes",
    "latency_ms_b1_p50",
    "latency_ms_b1_p90",
    "latency_ms_b256_p50",
    "latency_ms_b256_p90",
    "metric",
    "delta",
    "size_x_vs_onnx_fp32",
    "speedup_b256_vs_onnx_fp32",
)


@dataclass(frozen=True)
class Paths:
    """Every path the stage reads or writes, as `dvc.yaml` passes them."""

    prepared: Path = path_field("prepare stage output")
    augmented: Path = path_field("augment stage output, read when compress.use_augmented")
    model: Path = path_field("the trained network")
    out: Path = path_field("variant files")
    metrics: Path = path_field("one row per variant")
    plot: Path = path_field("plot data (CSV)")


def run(cfg: config.Params, paths: Paths, tracker=None) -> dict[str, dict[str, Any]]:
    """Build, measure and write every variant switched on in `compress:`.

    Args:
        cfg: validated params (reads `seed` and `compress`).
        paths: inputs and outputs.
        tracker: optional `VariantRuns` (MLflow nested runs); None logs nowhere.

    Returns:
        metrics/compression.json's content: variant name -> row.
    """
    if not paths.model.exists():
        raise UserError(f"missing trained model {paths.model}; produce it with `dvc repro train`")
    import torch

    from lightning_modules.pruning import count_macs
    from lightning_modules.serialization import load_network
    from stages.compress import variants as cv
    from stages.compress.measure import measure, metric_name, skill, torch_runner, trivial_metric

    c = cfg.compress
    torch.manual_seed(cfg.seed)
    teacher, meta = load_network(paths.model)
    # fine-tune and distill on the rows the network was fit on (train.fit_on)
    X_fit, y_fit, scale, fit_files = fit_rows.open_rows(
        paths.augmented if c.use_augmented else paths.prepared, cfg.train.fit_on
    )
    if fit_rows.in_memory(cfg.train.in_memory, fit_rows.float_bytes(X_fit)):
        X_fit = np.asarray(X_fit)  # else fine-tuning and calibration read rows from disk
    val = splits.load(paths.prepared / "val", "X", "y")
    X_val, y_val = val["X"].astype("float32"), val["y"]
    task, name_of_metric = meta["task"], metric_name(meta["task"])
    fit = fit_rows.describe(cfg.train.fit_on, fit_files, len(y_fit))
    log.info("model=%s arch=%s task=%s %s", paths.model, meta["arch"], task, fit)
    trivial = trivial_metric(task, y_fit, y_val)
    rows: dict[str, dict[str, Any]] = {}
    original = measure(torch_runner(teacher), X_val, y_val, task, [paths.model], c.latency)
    original["val_skill"] = round(skill(task, original[name_of_metric], trivial), 6)
    floor = _floor(original["val_skill"], c.degenerate_skill)
    n, nz = cv._counts(teacher)
    rows["original"] = {
        "method": "none",
        "status": "ok",
        "runtime": "pytorch",
        "params": n,
        "nonzero_params": nz,
        **original,
        "macs": count_macs(teacher, torch.as_tensor(X_val[:1])),
    }
    with io.atomic_dir(paths.out) as out_dir:
        ctx = cv.Context(
            c,
            cfg.seed,
            teacher,
            meta,
            X_fit,
            torch.as_tensor(y_fit),
            X_val,
            out_dir,
            scale=scale,
        )
        from stages.common.progress import bar

        variants = bar(cv.jobs(c), desc="variants", unit=" variant")
        for name, method, produce in variants:
            variants.set_postfix_str(name)
            run_id = tracker.start(name, method) if tracker else None
            ctx.run_ids[name] = run_id
            row: dict[str, Any] = {"method": method}
            try:
                signals.raise_if_received()  # one swallowed by a library in the last variant
                variant = produce(ctx, name)
                row |= {
                    "status": "ok",
                    "runtime": variant.runtime,
                    "params": variant.params,
                    "nonzero_params": variant.nonzero_params,
                }
                row |= measure(variant.run, X_val, y_val, task, variant.files, c.latency)
                row |= variant.info
                row |= _degenerate(name, task, row[name_of_metric], trivial, floor)
            except Exception as exc:  # recorded as this variant's failure row; others go on
                if (signum := signals.received()) is not None:  # a failure after SIGTERM
                    if tracker and run_id:
                        tracker.kill(run_id)
                    raise signals.exception_for(signum) from exc
                row |= {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:1000]}
                log.warning("variant=%s method=%s failed: %s", name, method, row["error"])
                for leftover in out_dir.glob(f"{name}.*"):
                    leftover.unlink()
            except BaseException:  # Ctrl-C / SIGTERM: this variant's run ends KILLED too
                if tracker and run_id:
                    tracker.kill(run_id)
                raise
            rows[name] = row
            if tracker:
                tracker.finish(run_id, row)
        for name, row in rows.items():  # after the loop: int8 reads onnx_fp32 whatever it is
            if row["status"] == "degenerate":
                for path in out_dir.glob(f"{name}.*"):
                    path.unlink()
    _add_comparisons(rows, name_of_metric)
    io.write_json(paths.metrics, rows)
    write_csv(paths.plot, rows)
    for name, row in rows.items():
        log.info(
            "variant=%s status=%s %s=%s delta=%s bytes=%s b256_p50=%s",
            name,
            row["status"],
            name_of_metric,
            row.get(name_of_metric),
            row.get("delta"),
            row.get("bytes"),
            row.get("latency_ms_b256_p50"),
        )
    return rows


def _floor(original_skill: float, threshold: float) -> float | None:
    """The skill a variant must beat: `compress.degenerate_skill`, or None (nothing flagged)
    when the trained network itself is no better than the trivial predictor."""
    if original_skill <= threshold:
        log.warning(
            "variant=original val_skill=%s <= compress.degenerate_skill %g: the trained network "
            "is itself no better than the trivial predictor; no variant is flagged degenerate",
            original_skill,
            threshold,
        )
        return None
    return threshold


def _degenerate(name: str, task: str, metric: float, trivial: float, floor: float | None) -> dict:
    """`val_skill` of one variant, plus status `degenerate` and the reason when it is at or
    below `floor` (see `_floor`)."""
    from stages.compress.measure import metric_name, skill

    value = skill(task, metric, trivial)
    out: dict[str, Any] = {"val_skill": round(value, 6)}
    if floor is not None and value <= floor:  # NaN (a trivially perfect val) is never flagged
        trivial_is = "the fit rows' mean" if task == "regression" else "the majority class"
        out["status"] = "degenerate"
        out["reason"] = (
            f"val skill {value:.3f} <= compress.degenerate_skill {floor:g}: "
            f"{metric_name(task)} {metric:.6g} vs {trivial:.6g} for {trivial_is}; not shipped"
        )
        log.warning("variant=%s degenerate: %s", name, out["reason"])
    return out


def _add_comparisons(rows: dict[str, dict[str, Any]], metric: str) -> None:
    """Delta vs the original's metric; size and batch-256 speed vs the fp32 ONNX reference."""
    base = rows["original"].get(metric)
    ref = rows.get("onnx_fp32", {})
    for row in rows.values():
        row["metric"] = metric
        if row["status"] == "failed":
            continue
        row["delta"] = round(row[metric] - base, 6)
        if ref.get("status") == "ok":
            row["size_x_vs_onnx_fp32"] = round(ref["bytes"] / row["bytes"], 3)
            row["speedup_b256_vs_onnx_fp32"] = round(
                ref["latency_ms_b256_p50"] / row["latency_ms_b256_p50"], 3
            )


def write_csv(path: Path, rows: dict[str, dict[str, Any]]) -> None:
    """plots/compression.csv: one line per variant for the size/latency/metric plot."""
    metric = next(iter(rows.values()))["metric"]
    columns = [*CSV_COLUMNS[:12], metric, *CSV_COLUMNS[12:]]
    with io.atomic_file(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        for name, row in rows.items():
            writer.writerow({"variant": name, **row})


def _require_model(path: Path) -> None:
    if not path.exists():
        raise UserError(f"missing trained model {path}; produce it with `dvc repro train`")
    from lightning_modules.safe_load import load_checked

    try:
        load_checked(path)
    except ValueError as exc:  # UnsafeFileError | CorruptFileError, both name the file
        raise UserError(f"{exc}; re-create it with `dvc repro train`") from None


def main(argv: list[str] | None = None) -> int:
    ap = parser("compress", "Prune, quantize and distill the trained model; measure each.", Paths)

    def body(args):
        cfg = config.load(args.params)
        paths = paths_from(args, Paths)
        _require_model(paths.model)  # missing/corrupt/hostile: refused before any MLflow run
        from stages.common.io import read_schema
        from stages.compress.tracking import VariantRuns
        from stages.runtime import tracking, tracking_inputs

        schema = read_schema(paths.prepared)
        with tracking.stage_run(
            "compress",
            cfg,
            SECTIONS,
            schema=schema,
            inputs=[str(paths.model), str(paths.prepared), str(paths.augmented)],
            system_metrics=True,
        ) as active:
            import mlflow

            source = paths.augmented if cfg.compress.use_augmented else paths.prepared
            read = fit_rows.splits(source, paths.prepared, cfg.train.fit_on)
            tracking_inputs.log_splits(schema["dataset"], read)
            mlflow.set_tag("fit_on", cfg.train.fit_on)
            mlflow.log_param("train.fit_on", cfg.train.fit_on)  # the rows, as for train
            rows = run(cfg, paths, VariantRuns(active))
            mlflow.log_artifact(str(paths.metrics))
            mlflow.log_artifact(str(paths.plot))
            mlflow.log_metrics(
                {
                    "variants_ok": sum(r["status"] == "ok" for r in rows.values()),
                    "variants_failed": sum(r["status"] == "failed" for r in rows.values()),
                    "variants_degenerate": sum(r["status"] == "degenerate" for r in rows.values()),
                }
            )

    with config.without_estimator_checks():  # validate and baselines check them
        return run_main("compress", body, ap, argv)
