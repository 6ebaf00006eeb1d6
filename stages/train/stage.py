"""train stage: fit the `model:` network on the augmented (or prepared) training split.

Outputs: `models/checkpoints/{last,best}.ckpt` (every epoch), `models/model.ckpt` (best),
`models/model.pt` (see `lightning_modules.serialization`), `metrics/train.json` (best val
metrics, epochs, seconds) and `plots/train_history.csv` (one row per epoch). Only global
rank 0 writes outputs or talks to MLflow; other DDP ranks only train.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from stages import config
from stages.common import compat, fit_rows, io
from stages.runtime import signals
from stages.runtime.cli import parser, paths_from, run_main
from stages.runtime.errors import UserError
from stages.train import rows as fit_data
from stages.train.paths import Paths
from stages.train.resume import ResumePoint, check_same_rows, resume_point
from stages.train.setup import load_params, module_args, monitor_of

SECTIONS = ("seed", "model", "train")
log = logging.getLogger("reprolab.train")


def global_rank(devices: int = 1) -> int:
    """This process's rank from the launcher's environment (torchrun, SLURM, Lightning)."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    return int(env.get("NODE_RANK", 0)) * devices + int(env.get("LOCAL_RANK", 0))


def run(
    cfg: config.Params,
    schema: dict[str, Any],
    paths: Paths,
    *,
    run_id: str | None = None,
    resume: ResumePoint | None = None,
    sink=None,
    callbacks=(),
    checkpoints: bool = True,
) -> dict[str, Any]:
    """Train, checkpoint and write the stage's outputs.

    Args:
        cfg: validated params (reads `seed`, `model`, `train`), tuned values already merged.
        schema: data/prepared/schema.json.
        paths: inputs and outputs.
        run_id: MLflow run id stored in checkpoints (resume continues that run).
        resume: where `train.resume: true` continues from (`train_resume.resume_point`,
            which the CLI resolves before opening its MLflow run); None: resolved here.
        sink: `sink(epoch, metrics)`, called on rank 0 after every epoch (MLflow).
        callbacks: extra Lightning callbacks (e.g. an Optuna pruning callback).
        checkpoints: False = no checkpoint files (tuning trials); model.pt then holds the
            weights at the end of fit, and there is no model.ckpt.

    Returns:
        metrics/train.json's content (empty on ranks other than 0).
    """
    compat.check(cfg, schema)
    import lightning as L
    import torch

    from lightning_modules.callbacks import CheckpointExtras, History, StepLoss
    from lightning_modules.data import TensorDataModule
    from lightning_modules.fit import build_trainer
    from lightning_modules.module import NonFiniteLossError, TaskModule
    from stages.train.interrupts import StopOnSignal

    started = time.perf_counter()
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    rows = fit_data.load(
        paths.augmented if t.use_augmented else paths.prepared,
        paths.prepared,
        t.fit_on,
        t.in_memory,
    )
    log.info(
        "%s val_rows=%d data=%s",
        fit_rows.describe(t.fit_on, rows.files, len(rows.y)),
        len(rows.val_y),
        "in-memory" if rows.in_memory else "streamed",
    )
    args = module_args(cfg, schema)
    module = TaskModule(**args)
    from stages.common.online_augment import online_transform

    data = TensorDataModule(
        (rows.X, rows.y),
        (rows.val_X, rows.val_y),
        batch_size=t.batch_size,
        seed=cfg.seed,
        in_memory=rows.in_memory,
        scale=rows.scale,
        train_transform=online_transform(cfg, schema),  # augment.mode: online
    )
    monitor, mode = monitor_of(cfg, schema)
    history = History(sink, since=_process_start())
    saved = {
        "mlflow_run_id": run_id,
        "max_epochs": t.max_epochs,
        "fit_on": t.fit_on,
        "fit_rows": len(rows.y),
        "batch_size": t.batch_size,
    }
    extra = [history, CheckpointExtras(saved), StopOnSignal()]
    if t.log_per_step and sink is not None:
        extra.append(StepLoss(sink, t.log_every_n_steps))
    trainer = build_trainer(
        paths.checkpoints if checkpoints else None,
        monitor,
        mode,
        t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        deterministic=t.deterministic,
        log_every_n_steps=t.log_every_n_steps,
        gradient_clip_val=t.gradient_clip.value,
        gradient_clip_algorithm=t.gradient_clip.algorithm,
        accumulate_grad_batches=t.accumulate_grad_batches,
        early_stopping=t.early_stopping.model_dump(exclude={"enabled"})
        if t.early_stopping.enabled
        else None,
        ema_decay=t.ema.decay if t.ema.enabled else None,
        ema_every=t.ema.every_n_steps,
        progress_bar=_progress_bar(t.progress_bar),
        callbacks=[*extra, *callbacks],
    )
    if t.resume and resume is None:
        resume = _resume_point(paths, t)
    if t.resume and resume is not None:
        check_same_rows(resume, len(rows.y))
    resume_from = resume.checkpoint if t.resume and resume is not None else None
    try:
        trainer.fit(module, datamodule=data, ckpt_path=resume_from, weights_only=True)
    except NonFiniteLossError as exc:
        kept = paths.last if paths.last.exists() else "none (first epoch)"
        raise UserError(f"training stopped: {exc}. Last good checkpoint kept: {kept}") from None
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into SystemExit(1): restore it
            raise signals.exception_for(signals.received() or signal.SIGINT) from None
        raise
    if not trainer.is_global_zero:
        return {}
    from stages.train.outputs import FitResult, write_outputs

    fit = FitResult(
        trainer=trainer,
        rows=history.rows,
        monitor=monitor,
        mode=mode,
        started=started,
        run_id=run_id,
        startup=history.startup_seconds,
        module=None if checkpoints else module,
    )
    return write_outputs(cfg, schema, paths, args, fit)


def _resume_point(paths: Paths, t) -> ResumePoint:
    return resume_point(paths.checkpoints, t.max_epochs, t.scheduler.name, t.fit_on, t.batch_size)


def _process_start() -> float:
    import psutil

    return psutil.Process().create_time()


def _progress_bar(setting: str) -> bool:
    if setting != "auto":
        return setting == "on"
    return sys.stderr.isatty() and not os.environ.get("CI")


def main(argv: list[str] | None = None) -> int:
    ap = parser("train", "Train the model: network on the augmented/prepared data.", Paths)

    def body(args):
        cfg, tuned = load_params(Path(args.params), Path(args.tuned))
        paths = paths_from(args, Paths)
        schema = io.read_schema(paths.prepared)
        compat.check(cfg, schema)  # refuse bad combinations before any MLflow run
        point = ResumePoint(None, None)
        t = cfg.train
        if t.resume:  # refuse a hostile/unloadable checkpoint before any MLflow run
            point = _resume_point(paths, t)
        if global_rank(t.devices) != 0:
            run(cfg, schema, paths, resume=point)
            return
        from stages.runtime import tracking, tracking_inputs
        from stages.train.outputs import log_to_mlflow, mlflow_sink

        run_id = point.run_id
        with tracking.stage_run(
            "train",
            cfg,
            SECTIONS,
            schema=schema,
            inputs=[str(paths.prepared), str(paths.augmented)],
            run_id=run_id,
            system_metrics=True,
        ) as active:
            source = paths.augmented if t.use_augmented else paths.prepared
            splits = fit_rows.splits(source, paths.prepared, t.fit_on)
            tracking_inputs.log_splits(schema["dataset"], splits)
            log_to_mlflow(tuned, resumed=run_id is not None)
            metrics = run(
                cfg,
                schema,
                paths,
                run_id=active.info.run_id,
                resume=point,
                sink=mlflow_sink(),
            )
            log_to_mlflow(tuned, metrics=metrics, paths=paths)

    with config.without_estimator_checks():  # validate and baselines check them
        return run_main("train", body, ap, argv)
