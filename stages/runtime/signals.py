"""SIGTERM and SIGINT as exceptions that always reach the stage's cleanup code.

SIGTERM raises `Terminated`, SIGINT `KeyboardInterrupt`, in the main thread, so `finally`
blocks run and the stage ends its MLflow run KILLED. Python runs a signal handler at the
next bytecode boundary, and when that boundary lies inside a `__del__` or a weakref
callback (a garbage-collected Lightning profiler, say) the exception is printed as
"Exception ignored in ..." and dropped: the process would go on as if nothing was sent, and
a trial blocked afterwards would never end. `sys.unraisablehook` sees exactly those drops;
the hook installed here sends the same signal again a moment later, from another thread,
so it lands in the next ordinary frame. The handler likewise waits (by the same re-sending,
at most `MAX_DEFER_S`) while the main thread is inside database code, where an exception
would leave a transaction open and the database locked for the cleanup that follows, and
while the innermost frame is importlib's own code, where it would leave an import lock held.

A received signal also stays *pending* until the context ends: library code that catches
`BaseException` (or an import interrupted half-way that a library then treats as a missing
optional module) can swallow the exception, and the stage would train on to the end. So
`raise_if_received()` raises it again at the next unit of work (a training batch), an
atomic output refuses to commit once a signal is pending, and the context itself raises it
if its body completed anyway. `received()` names the signal, so the exit code and the log
line say SIGTERM even when a library turned it into a KeyboardInterrupt or SystemExit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

log = logging.getLogger("reprolab.signals")
REDELIVER_AFTER_S = 0.05
# an exception thrown into SQLAlchemy mid-commit skips its rollback (it catches Exception,
# not BaseException): the connection keeps sqlite's write lock and the stage's own
# "end the run KILLED" then fails with "database is locked". Wait for such code to return.
DEFER_INSIDE = ("sqlalchemy.", "sqlite3.", "alembic.", "psycopg.", "optuna.storages.")
MAX_DEFER_S = 10.0
IMPORT_MACHINERY = ("importlib._bootstrap", "importlib._bootstrap_external")
_deferred_since: dict[int, float] = {}
_received: list[int] = []  # the first signal received in the active context (at most one)
_active = 0  # open signals_as_exceptions() contexts: a re-send after the last one is dropped


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM."""


def _kill_if_active(signum: int) -> None:
    # after the context has ended the handler is the previous one (SIG_DFL, usually): a
    # late re-send would kill the process with -15 during its orderly exit
    if _active:
        os.kill(os.getpid(), signum)


def _resend(signum: int) -> None:
    """Send `signum` to this process again, from another thread, a moment from now."""
    resend = threading.Timer(REDELIVER_AFTER_S, _kill_if_active, (signum,))
    resend.daemon = True
    resend.start()


def _in_database_code(frame) -> bool:
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(DEFER_INSIDE):
            return True
        frame = frame.f_back
    return False


def _in_import_machinery(frame) -> bool:
    # importlib's own bookkeeping, not a module body it runs: an exception between taking
    # a module's import lock and the code that releases it leaves the lock held, and the
    # next thread to import that module (MLflow's system-metrics monitor, which the
    # stage's cleanup then joins) waits forever; seen as a stage hung after SIGTERM
    return frame is not None and frame.f_globals.get("__name__", "") in IMPORT_MACHINERY


def _raise_for(signum: int, frame) -> None:
    """The handler: raise the signal's exception, unless that would break a transaction
    or the import system's locks."""
    if not _received:
        _received.append(signum)
    if _in_import_machinery(frame) or _in_database_code(frame):
        first = _deferred_since.setdefault(signum, time.monotonic())
        if time.monotonic() - first < MAX_DEFER_S:
            _resend(signum)
            return
    _deferred_since.pop(signum, None)
    raise exception_for(signum)


def exception_for(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(f"received {signum}")


def received() -> signal.Signals | None:
    """The signal this process received in the active context, if any."""
    return signal.Signals(_received[0]) if _received else None


def raise_if_received() -> None:
    """Raise the received signal's exception again (it may have been swallowed since)."""
    if _received:
        raise exception_for(_received[0])


def _redeliver_dropped(previous_hook):
    def hook(unraisable) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, Terminated):
            signum = signal.SIGTERM
        elif isinstance(exc, KeyboardInterrupt):
            signum = signal.SIGINT
        else:
            previous_hook(unraisable)
            return
        where = getattr(unraisable.object, "__qualname__", repr(unraisable.object))
        log.debug("%s dropped inside %s; sending it again", signum.name, where)
        # from another thread, a moment later: sent from here, the handler would run at
        # once, inside this hook, where its exception is dropped too
        _resend(signum)

    return hook


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGTERM -> `Terminated`, SIGINT -> KeyboardInterrupt: raised outside database code,
    and sent again if a finalizer drops the exception; raised at the end if swallowed."""
    global _active
    if not _active:
        _received.clear()
    _active += 1
    previous_term = signal.signal(signal.SIGTERM, _raise_for)
    previous_int = signal.signal(signal.SIGINT, _raise_for)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _redeliver_dropped(previous_hook)
    try:
        yield
        raise_if_received()  # the body ran on: something swallowed the exception
    finally:
        _active -= 1
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
