"""SIGTERM and SIGINT as exceptions that always reach the stage's cleanup code.

SIGTERM raises `Terminated`, SIGINT `KeyboardInterrupt`, in the main thread, so `finally`
blocks run and the stage ends its MLflow run KILLED. Python runs a signal handler at the
next bytecode boundary, and when that boundary lies inside a `__del__` or a weakref
callback (a garbage-collected Lightning profiler, say) the exception is printed as
"Exception ignored in ..." and dropped: the process would go on as if nothing was sent, and
a trial blocked afterwards would never end. `sys.unraisablehook` sees exactly those drops;
the hook installed here sends the same signal again a moment later, from another thread,
so it lands in the next ordinary frame.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger("reprolab.signals")
REDELIVER_AFTER_S = 0.05


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM."""


def _on_term(signum, frame):
    raise Terminated(f"received signal {signum}")


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
        resend = threading.Timer(REDELIVER_AFTER_S, os.kill, (os.getpid(), signum))
        resend.daemon = True
        resend.start()

    return hook


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGTERM -> `Terminated`, SIGINT -> KeyboardInterrupt, re-sent if a finalizer drops it."""
    previous_term = signal.signal(signal.SIGTERM, _on_term)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _redeliver_dropped(previous_hook)
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGTERM, previous_term)
