"""A sqlite tracking store is created whole or not at all, and a damaged one is named.

MLflow creates a missing sqlite database in place, one DDL statement and one alembic
migration at a time (Python's sqlite3 commits each CREATE TABLE on its own). A Ctrl-C,
SIGTERM or SIGKILL in that second left `mlflow.db` half-built, and every later stage then
died inside alembic ("table evaluation_datasets already exists"). Here the schema is built
in a temp file beside the target and hard-linked into place: the link fails if another
process created the database first (its runs are kept), and a killed build leaves only the
temp file, never a database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from stages.runtime.errors import UserError

log = logging.getLogger("reprolab.tracking")


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///...` URI (relative to the working directory), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if rest in ("", ":memory:") else Path(rest)


def ensure_sqlite_schema(uri: str) -> None:
    """Give a missing sqlite store its full schema in one step (no-op for other stores)."""
    path = sqlite_path(uri)
    if path is None or path.exists():
        return
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        with contextlib.suppress(FileExistsError):  # created meanwhile by another stage
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def named_store_errors(uri: str) -> Iterator[None]:
    """A sqlite store whose schema MLflow cannot open or migrate -> one UserError naming the
    file, how many runs it holds, and what to do; not alembic's traceback."""
    try:
        yield
    except Exception as exc:
        path = sqlite_path(uri)
        if path is None or not path.exists() or not _is_schema_error(exc):
            raise
        raise UserError(
            f"{path}: the MLflow tracking database's schema is incomplete or from another "
            f"MLflow version ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). It "
            f"holds {_run_count(path)}. A database left half-created by a process killed "
            f"while creating it holds no runs: move it away and rerun. Otherwise back it up "
            f"and run `mlflow db upgrade sqlite:///{path}`"
        ) from None


def _is_schema_error(exc: Exception) -> bool:
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, sqlalchemy.exc.OperationalError | MlflowException):
        return False
    text = str(exc)
    return any(
        sign in text
        for sign in ("already exists", "no such table", "no such column", "database schema")
    )


def _run_count(path: Path) -> str:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            (n,) = db.execute("SELECT count(*) FROM runs").fetchone()
    except sqlite3.Error:
        return "no runs table"
    return f"{n} run{'s' * (n != 1)}"
