"""The sqlite tracking store survives a kill while it is being created, and a damaged one
is refused with its file named.

Seen in a stress run: SIGTERM during a fresh project's first stage, while MLflow created
`mlflow.db` table by table, left a half-built database; every later stage died inside
alembic with "table evaluation_datasets already exists"."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import REPO

from stages.runtime.errors import UserError
from stages.runtime.store_init import ensure_sqlite_schema, named_store_errors

CREATE = """
import sys
from stages.runtime.store_init import ensure_sqlite_schema
print("IMPORTED", flush=True)
ensure_sqlite_schema(sys.argv[1])
"""


def _tables(path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _tables_so_far(path) -> set[str]:
    """The tables of a database file another process is still writing: none while its
    first page is not on disk yet ("file is not a database")."""
    try:
        return _tables(path)
    except sqlite3.DatabaseError:
        return set()


def test_a_kill_while_the_store_is_created_leaves_no_database(tmp_path, reliability):
    db = tmp_path / "mlflow.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CREATE, f"sqlite:///{db}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "IMPORTED"
    deadline = time.monotonic() + 60
    tmp = []
    while not tmp and time.monotonic() < deadline and proc.poll() is None:
        tmp = [p for p in tmp_path.iterdir() if p.name.startswith(".mlflow.db.tmp-")]
        time.sleep(0.005)
    assert tmp, "the schema was not built in a temp file"
    while time.monotonic() < deadline and len(_tables_so_far(tmp[0])) < 5:  # mid-migration
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not db.exists()  # no half-built database: the next stage builds it whole

    ensure_sqlite_schema(f"sqlite:///{db}")
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{db}")
    try:
        exp = mlflow.set_experiment("after-a-kill")
        assert mlflow.MlflowClient().create_run(exp.experiment_id).info.status == "RUNNING"
    finally:
        mlflow.set_tracking_uri(None)
    reliability.record(
        "fault",
        "SIGKILL while the sqlite tracking store is being created (first stage of a project)",
        "the schema is built in a temp file and linked into place: no half-built "
        "`mlflow.db`; the next stage creates it and logs runs",
        before={"tables in the temp file when killed": ">= 5"},
        after={"mlflow.db": "absent, then created whole"},
    )


def test_an_existing_store_is_kept(tmp_path):
    db = tmp_path / "mlflow.db"
    ensure_sqlite_schema(f"sqlite:///{db}")
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE mine (x)")
    ensure_sqlite_schema(f"sqlite:///{db}")
    assert "mine" in _tables(db) and "runs" in _tables(db)
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]


def test_a_half_built_store_is_refused_by_name(tmp_path):
    """What MLflow's in-place creation left behind when killed: some tables, no version."""
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER)")
        conn.execute("CREATE TABLE evaluation_datasets (dataset_id VARCHAR(36))")
    import mlflow

    uri = f"sqlite:///{db}"
    try:
        with pytest.raises(UserError) as err, named_store_errors(uri):
            ensure_sqlite_schema(uri)
            mlflow.set_tracking_uri(uri)
            mlflow.set_experiment("x")
    finally:
        mlflow.set_tracking_uri(None)
    text = str(err.value)
    assert str(db) in text and "move it away" in text
    assert "holds 0 runs" in text or "holds no runs table" in text
