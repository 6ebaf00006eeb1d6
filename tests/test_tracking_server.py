"""A real `mlflow server` on a loopback port: every stage run reaches it; outages fail clearly."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import yaml

from stages.common import splits
from stages.runtime import tracking_retry
from tests.conftest import pipeline_env, run_dvc, run_stage, write_params

TINY = {"augment": {"multiplier": 2, "sample_grid": 4}}
FAST_GIVE_UP = {  # a small retry budget so the outage test takes seconds, not minutes
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(backend: str, artifacts: Path, port: int | None = None) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 (one worker, no job runner); yields its http URI."""
    port = port or free_port()
    log = artifacts.parent / f"mlflow-server-{port}.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [
        *(str(Path(sys.executable).parent / "mlflow"), "server"),
        *("--backend-store-uri", backend, "--artifacts-destination", str(artifacts)),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
    ]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"mlflow server exited:\n{log.read_text()[-3000:]}")
            if _healthy(uri):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"mlflow server not up in 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield uri
    finally:
        stop_server(proc)


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as res:
            return res.status == 200
    except OSError:
        return False


def stop_server(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A new, empty database next to the one in `url`; dropped afterwards."""
    import psycopg2
    from sqlalchemy.engine import make_url

    name = f"mlflow_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'server.db'}"
    else:
        with fresh_database(request.getfixturevalue("postgres_url")) as url:
            yield url


def dvc(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run_dvc(repo, env, *args, check=False, timeout=300)


def server_runs(uri: str, filter_string: str = "") -> list:
    client = mlflow.MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, filter_string=filter_string) if ids else []


def test_retry_bound_follows_mlflow_settings(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    assert tracking_retry.retry_bound() == (3, 4 + 8, 7)  # urllib3: at once, then 2f, 4f


@pytest.mark.integration
def test_server_receives_every_stage_run(repo_copy, tmp_path, backend):
    artifacts = tmp_path / "artifacts"
    with mlflow_server(backend, artifacts) as uri:
        env = {**pipeline_env(tmp_path), "MLFLOW_TRACKING_URI": uri}
        write_params(repo_copy, TINY)
        res = dvc(repo_copy, env, "repro", "prepare", "augment")
        assert res.returncode == 0, res.stdout + res.stderr
        ran = set(re.findall(r"Running stage '([^']+)'", res.stdout))
        assert ran == {"validate", "prepare", "augment"}
        ran.discard("validate")  # a guard that opens no MLflow run: it produces nothing

        runs = server_runs(uri)
        assert {r.data.tags["stage"] for r in runs} == ran and len(runs) == len(ran)
        assert all(r.info.status == "FINISHED" for r in runs)
        assert len({r.data.tags["pipeline_id"] for r in runs}) == 1
        by_stage = {r.data.tags["stage"]: r for r in runs}
        assert by_stage["prepare"].data.metrics["rows_train"] > 0
        aug_metrics = by_stage["augment"].data.metrics
        assert aug_metrics["rows_out"] == 2 * aug_metrics["rows_in"]
        assert by_stage["prepare"].data.params["data.source"] == "digits"
        aug_id = by_stage["augment"].info.run_id
        listed = [a.path for a in mlflow.MlflowClient(uri).list_artifacts(aug_id)]
        assert "samples.png" in listed
    assert list(artifacts.rglob("samples.png")), "artifacts were not proxied into the server root"
    assert not (repo_copy / "mlflow.db").exists()


@pytest.mark.integration
def test_server_down_at_start_fails_before_compute(repo_copy, tmp_path, reliability):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {**pipeline_env(tmp_path), "MLFLOW_TRACKING_URI": uri, **FAST_GIVE_UP}
    started = time.monotonic()
    res = run_stage("prepare", repo_copy, env, "--out", "data/prepared", timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"error: prepare: MLflow tracking server {uri} is unreachable" in res.stderr
    assert "Connection refused" in res.stderr and "gave up after 2 retries" in res.stderr
    took = time.monotonic() - started
    assert took < 60
    assert not (repo_copy / "data/prepared").exists()
    reliability.record(
        "fault",
        "MLflow tracking server down when a stage starts",
        "exit 2 before any compute, naming the URI and the retries; no traceback",
        before={"outputs": 0},
        after={"exit": res.returncode, "outputs": 0, "gave up after s": round(took, 1)},
    )


def _wait_running(uri: str, stage: str, proc: subprocess.Popen, timeout: float = 120) -> int:
    """pid of the stage process once its MLflow run is RUNNING on the server."""
    deadline = time.monotonic() + timeout
    query = f"tags.stage = '{stage}' and attributes.status = 'RUNNING'"
    while time.monotonic() < deadline and proc.poll() is None:
        if runs := server_runs(uri, query):
            return int(runs[0].data.tags["reprolab_pid"])
        time.sleep(0.05)
    out, err = proc.communicate()
    raise AssertionError(f"no RUNNING {stage} run seen (exit {proc.returncode}):\n{out}\n{err}")


@pytest.mark.integration
def test_server_stopped_mid_stage_fails_clearly_and_recovers(repo_copy, tmp_path, reliability):
    artifacts, port = tmp_path / "artifacts", free_port()
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    write_params(repo_copy, TINY)
    pid, proc = None, None

    def locked(stage: str):
        lock = repo_copy / "dvc.lock"
        return (yaml.safe_load(lock.read_text())["stages"] if lock.exists() else {}).get(stage)

    try:
        with mlflow_server(backend, artifacts, port) as uri:
            env = {**pipeline_env(tmp_path), "MLFLOW_TRACKING_URI": uri, **FAST_GIVE_UP}
            first = dvc(repo_copy, env, "repro", "prepare")
            assert first.returncode == 0, first.stdout + first.stderr
            before = locked("augment")
            proc = subprocess.Popen(
                [sys.executable, "-m", "dvc", "repro", "augment"],
                cwd=repo_copy,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            # Freeze the stage while its run is open, stop the server, then let it go on.
            pid = _wait_running(uri, "augment", proc)
            os.kill(pid, signal.SIGSTOP)
        os.kill(pid, signal.SIGCONT)
        out, _ = proc.communicate(timeout=180)
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode != 0, out
    assert f"error: augment: MLflow tracking server {uri} is unreachable" in out
    assert "gave up after 2 retries" in out and "Traceback" not in out
    data = repo_copy / "data"
    assert not [p.name for p in data.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    if (data / "augmented").exists():  # written atomically before the failing log call: complete
        found = splits.meta(data / "augmented/train")["arrays"]
        assert {"X", "y", "source_index", "augmented"} <= set(found)
    assert locked("augment") == before  # DVC recorded nothing for the failed augment

    with mlflow_server(backend, artifacts, port) as uri:  # same store, back up
        env = {**pipeline_env(tmp_path), "MLFLOW_TRACKING_URI": uri}
        again = dvc(repo_copy, env, "repro", "prepare", "augment")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Running stage 'augment'" in again.stdout
        assert "Running stage 'prepare'" not in again.stdout  # prepare's work was kept
        statuses = sorted(r.info.status for r in server_runs(uri, "tags.stage = 'augment'"))
    assert statuses == ["FINISHED", "KILLED"]  # the cut-off run is closed, not left RUNNING
    reliability.record(
        "fault",
        "MLflow server stopped while `augment` runs (stage frozen mid-run), then restarted",
        "bounded retries, then exit != 0 naming the URI; dvc records nothing for it; the "
        "re-run after the restart redoes only augment",
        before={"augment in dvc.lock": before is not None},
        after={"augment runs": dict(Counter(statuses)), "prepare re-run": False},
    )
