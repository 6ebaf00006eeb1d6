"""MLflow for every stage: one run per stage execution, tagged for lineage.

Each run carries `stage`, `git_commit` (+ `git_dirty`), `params_hash`, `data_fingerprint`,
`pipeline_id` (shared by all stages of one `dvc repro`), `dvc_experiment` (under `dvc exp
run`) and the DVC hashes of the stage's inputs, so a result traces back to the exact code,
params and data. Runs are named `<stage> · <DVC experiment or short pipeline id>`, and the
experiment is of MLflow's kind `custom_model_development` (its UI then opens on the training
runs, not the GenAI overview). A run never stays RUNNING: exceptions end it FAILED,
SIGINT/SIGTERM end it KILLED, and a run whose process was SIGKILLed is marked KILLED by the
next stage that starts on the same host.
An unreachable tracking server is retried for a bounded time, then the stage fails with
one clear error (stages/runtime/tracking_retry.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

try:  # libyaml: reads dvc.lock 9x faster than the pure-Python loader
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader

from stages.config import Params, params_hash, section_dict
from stages.runtime import tracking_retry
from stages.runtime.signals import (
    Terminated,
    exception_for,
    raise_if_received,
    received,
    signals_as_exceptions,
)
from stages.runtime.store_init import ensure_sqlite_schema, named_store_errors

log = logging.getLogger("reprolab.tracking")

DEFAULT_URI = "sqlite:///mlflow.db"
MAX_PARAM_LEN = 6000
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


_SECRET_IN_URL = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]+:)(?P<secret>[^@\s]+)@")


def mask_secrets(text: str) -> str:
    """Hide passwords in URLs (postgresql://user:secret@host -> postgresql://user:***@host)."""
    return _SECRET_IN_URL.sub(lambda m: f"{m.group('head')}***@", text)


def tracking_uri(cfg: Params) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.mlflow.tracking_uri or DEFAULT_URI


def experiment_name(cfg: Params, dataset: str | None = None) -> str:
    if cfg.mlflow.experiment:
        return cfg.mlflow.experiment
    name = dataset or (cfg.data.source if cfg.data.is_builtin else Path(cfg.data.source).stem)
    return f"reprolab-{name}"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params -> {"train.optimizer.lr": 0.001, ...}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def git_info(cwd: str | Path = ".") -> dict[str, str]:
    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip()

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": commit or "unknown",
        "git_dirty": "unknown" if dirty is None else str(bool(dirty)).lower(),
    }


def pipeline_id() -> str:
    """Same value in every stage of one `dvc repro`: the id of the dvc process that runs them."""
    if env := os.environ.get("REPROLAB_PIPELINE_ID"):
        return env
    try:
        import psutil

        for proc in psutil.Process().parents():
            cmd = " ".join(proc.cmdline())
            if "dvc" in Path(proc.cmdline()[0]).name or " dvc " in f" {cmd} " or "dvc/" in cmd:
                seed = f"{socket.gethostname()}:{proc.pid}:{proc.create_time()}"
                return hashlib.sha256(seed.encode()).hexdigest()[:12]
    except Exception as exc:  # psutil missing or /proc unreadable: fall back to a fresh id
        log.debug("pipeline id from process tree unavailable: %s", exc)
    return uuid.uuid4().hex[:12]


def lock_outs(lock_path: str | Path = "dvc.lock") -> dict[str, str]:
    """{output path: DVC hash} of every stage output recorded in dvc.lock ({} without one)."""
    lock = Path(lock_path)
    if not lock.exists():
        return {}
    try:
        with open(lock) as fh:
            stages = (yaml.load(fh, Loader=SafeLoader) or {}).get("stages", {})
    except (yaml.YAMLError, OSError) as exc:
        log.warning("cannot read %s for lineage tags: %s", lock, exc)
        return {}
    return {
        os.path.normpath(out["path"]): out.get("md5") or out.get("hash", "")
        for stage in stages.values()
        for out in stage.get("outs", [])
    }


def dvc_dep_hashes(paths: list[str], lock_path: str | Path = "dvc.lock") -> dict[str, str]:
    """DVC's own hashes of `paths`, as recorded in dvc.lock by the stages that produced them."""
    known = lock_outs(lock_path) if paths else {}
    wanted = {os.path.normpath(p) for p in paths}
    return {f"dvc_dep.{p}": known[p] for p in sorted(wanted) if p in known}


def run_name(stage: str, pipeline: str) -> str:
    """`train · exp-3f2a1` under `dvc exp run`, else `train · 1a2b3c` (short pipeline id)."""
    return f"{stage} · {os.environ.get('DVC_EXP_NAME') or pipeline[:6]}"


def mark_experiment_kind(client: Any, experiment: Any) -> None:
    """Tag the experiment as model training (once), so MLflow's UI opens on its runs."""
    key, kind = EXPERIMENT_KIND
    if key not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, key, kind)


def close_orphaned_runs(client: Any, experiment_id: str) -> int:
    """Mark KILLED the RUNNING runs of this host whose process no longer exists (kill -9),
    then the RUNNING nested runs (compress variants, tune trials) under a run of this host
    that has ended: nobody is left to close them."""
    import psutil

    host = socket.gethostname()
    running = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    )
    closed: set[str] = set()
    for run in running:
        tags = run.data.tags
        pid = tags.get("reprolab_pid")
        mine = tags.get("reprolab_host") == host and pid and pid.isdigit()
        if mine and not psutil.pid_exists(int(pid)):
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.add(run.info.run_id)
    still = {r.info.run_id for r in running} - closed
    for run in running:
        tags, parent = run.data.tags, run.data.tags.get("mlflow.parentRunId")
        if run.info.run_id in closed or not parent or tags.get("reprolab_pid") or parent in still:
            continue
        try:
            parent_run = client.get_run(parent)
        except Exception:  # parent deleted: the child is an orphan too
            parent_run = None
        if parent_run is None or parent_run.data.tags.get("reprolab_host") == host:
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.add(run.info.run_id)
    if closed:
        log.warning("marked %d orphaned RUNNING run(s) KILLED (their process died)", len(closed))
    return len(closed)


def end_all_runs(status: str) -> None:
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run(status=status)


def log_params(params: Mapping[str, Any]) -> None:
    """Log flattened params in one batch; long values are truncated, never dropped."""
    import mlflow

    clean = {}
    for key, value in flatten(params).items():
        text = "null" if value is None else mask_secrets(str(value))
        clean[key] = text if len(text) <= MAX_PARAM_LEN else text[: MAX_PARAM_LEN - 3] + "..."
    if clean:
        mlflow.log_params(clean)


@contextlib.contextmanager
@tracking_retry.outages_as_errors
def stage_run(
    stage: str,
    cfg: Params,
    sections: tuple[str, ...],
    *,
    schema: dict[str, Any] | None = None,
    dataset: str | None = None,
    data_fingerprint: str | None = None,
    inputs: list[str] | None = None,
    run_id: str | None = None,
    system_metrics: bool = False,
) -> Iterator[Any]:
    """Open the MLflow run of one stage execution; end it FINISHED / FAILED / KILLED.

    Args:
        stage: stage name (the run is named `run_name(stage, ...)`).
        cfg: validated params.
        sections: the params sections this stage reads (logged and hashed).
        schema: prepare's schema.json; sets `dataset` and `data_fingerprint` from it.
        dataset: dataset name from schema.json, for the experiment name.
        data_fingerprint: fingerprint of the source data (schema.json).
        inputs: the stage's input paths; their DVC hashes are tagged.
        run_id: continue this run instead of starting a new one (resume).
        system_metrics: sample CPU, memory, disk and network (and GPU, where MLflow can read
            it) into `system/*` metrics while the run is open; for the long stages.
            $MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL sets the period (MLflow's: 10 s).

    Yields:
        The active `mlflow.ActiveRun`.
    """
    import mlflow

    if schema is not None:
        dataset, data_fingerprint = schema["dataset"], schema["fingerprint"]
    uri = tracking_uri(cfg)
    with named_store_errors(uri):
        ensure_sqlite_schema(uri)
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.set_experiment(experiment_name(cfg, dataset))
    client = mlflow.MlflowClient()
    mark_experiment_kind(client, experiment)
    close_orphaned_runs(client, experiment.experiment_id)
    pipeline = pipeline_id()
    tags = {
        "stage": stage,
        "params_hash": params_hash(cfg, *sections),
        "data_fingerprint": data_fingerprint or "unknown",
        "pipeline_id": pipeline,
        "reprolab_host": socket.gethostname(),
        "reprolab_pid": str(os.getpid()),
        **git_info(),
        **dvc_dep_hashes(inputs or []),
    }
    if exp := os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = exp
    name = None if run_id else run_name(stage, pipeline)
    with signals_as_exceptions():
        run = mlflow.start_run(
            run_id=run_id, run_name=name, tags=tags, log_system_metrics=system_metrics
        )
        log.info(
            "stage=%s mlflow_run=%s experiment=%s uri=%s",
            stage,
            run.info.run_id,
            experiment.name,
            mask_secrets(tracking_uri(cfg)),
        )
        try:
            if run_id is None:
                log_params(section_dict(cfg, *sections))
            yield run
            raise_if_received()  # swallowed by a library on the way: still an interruption
        except (KeyboardInterrupt, Terminated):
            end_all_runs("KILLED")
            raise
        except BaseException as exc:
            if (signum := received()) is not None:
                # a failure after SIGTERM/SIGINT (a half-done import, say) is the signal's
                end_all_runs("KILLED")
                raise exception_for(signum) from exc
            if tracking_retry.is_outage(exc):  # one quick try each, not another retry budget
                tracking_retry.end_runs_quickly("FAILED")
            end_all_runs("FAILED")
            raise
        end_all_runs("FINISHED")
