"""Bounded retries against a remote MLflow tracking server, then one clear error.

MLflow's HTTP client already retries failed requests with exponential backoff (urllib3
`Retry`: at once, then factor*2, factor*4, ... seconds, each wait capped at 120 s), set by
MLFLOW_HTTP_REQUEST_MAX_RETRIES, _BACKOFF_FACTOR, _BACKOFF_JITTER and _TIMEOUT. A stage keeps
what the user set and fills the rest from `DEFAULTS`: about two minutes of retries instead
of MLflow's four plus 120 s timeouts. When they run out the stage fails with
`TrackingUnavailable`, which names the URI and the bound. Nothing is dropped silently: the
stage fails, so DVC records nothing and runs it again; its outputs are written atomically,
so the ones already in place stay and none is half-written.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from stages.runtime.errors import UserError

log = logging.getLogger("reprolab.tracking")

DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "6",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
BACKOFF_CAP_S = 120.0  # urllib3 Retry.DEFAULT_BACKOFF_MAX
QUICK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


class TrackingUnavailable(UserError):
    """The tracking server stayed unreachable for the whole retry budget."""


def configure() -> None:
    """Fill in reprolab's retry defaults for the MLflow HTTP settings the user left unset."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)


def retry_bound() -> tuple[int, float, int]:
    """(retries, seconds of backoff at most, timeout per attempt) under the current settings."""
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    retries = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    factor = MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get()
    waits = sum(min(BACKOFF_CAP_S, factor * 2 ** (k - 1)) for k in range(2, retries + 1))
    jitter = retries * MLFLOW_HTTP_REQUEST_BACKOFF_JITTER.get()
    return retries, waits + jitter, MLFLOW_HTTP_REQUEST_TIMEOUT.get()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def is_outage(exc: BaseException) -> bool:
    """True for an MLflow request that failed to connect, timed out or kept getting 5xx."""
    import requests
    from mlflow.exceptions import MlflowException

    chain = list(_chain(exc))
    network = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.RetryError,
    )
    return any(isinstance(e, MlflowException) for e in chain) and any(
        isinstance(e, network) for e in chain
    )


def _public(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return urlunsplit(parts._replace(netloc=f"***@{parts.hostname}:{parts.port or ''}"))


def _reason(exc: BaseException) -> str:
    text = str(list(_chain(exc))[-1])
    if m := re.search(r"\[Errno -?\d+\] [^'\")]+|timed out|too many \d+ error responses", text):
        return m.group(0)
    return text[:200]


def describe(exc: BaseException, uri: str) -> str:
    retries, waits, timeout = retry_bound()
    return (
        f"MLflow tracking server {_public(uri)} is unreachable ({_reason(exc)}); gave up after "
        f"{retries} retries with backoff (up to {waits:.0f} s of waits, {timeout} s timeout per "
        "attempt; change with "
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR and "
        "MLFLOW_HTTP_REQUEST_TIMEOUT). The stage failed, so DVC did not record it: outputs it "
        "already wrote are complete and stay in place, none is half-written. Start the server "
        "(`make mlflow-server`) and run `dvc repro` again to log the run; a run left RUNNING "
        "on the server is marked KILLED by the next stage that starts on this host."
    )


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def end_runs_quickly(status: str) -> None:
    """End every active run with one short attempt each (the server is likely down)."""
    import mlflow

    with _env(QUICK):
        while (run := mlflow.active_run()) is not None:
            try:
                mlflow.end_run(status=status)  # pops the run before it calls the server
            except Exception as exc:
                log.warning("run %s left RUNNING on the server: %s", run.info.run_id, exc)


def outages_as_errors(gen_fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """Wrap a run generator: set retry defaults; an outage ends it as `TrackingUnavailable`."""

    @functools.wraps(gen_fn)
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        import mlflow

        configure()
        try:
            return (yield from gen_fn(*args, **kwargs))
        except Exception as exc:
            if not is_outage(exc):
                raise
            end_runs_quickly("FAILED")
            raise TrackingUnavailable(describe(exc, mlflow.get_tracking_uri())) from exc

    return wrapper
