"""`python -m stages.<stage>` handed to a warm interpreter, when one is running.

Importing torch, Lightning, MLflow and scikit-learn costs a stage 3-7 s before it does any
work, and `dvc repro` starts a fresh process per stage. `python -m stages.runtime.warm --
dvc repro` starts one interpreter that has imported them once (`stages.runtime.warm`) and
runs the command with `REPROLAB_WARM_SOCKET` set. `stages/__init__.py` then calls
`hand_off()` before anything else is imported: this process connects, passes its argv,
working directory, environment and its stdin/stdout/stderr (the descriptors themselves),
and the warm interpreter forks the stage from its imported state. This process stays the
stage as DVC sees it: it forwards the signals it receives (Ctrl-C, SIGTERM) to the forked
stage and exits with the stage's status, or dies of the same signal. If it is killed
outright, the warm side kills the stage (`warm.py`).

No server, one that refuses (a different interpreter or environment, see `warm.py`), or a
socket that is not there: the stage runs here, cold, as it would without any of this. Only
the standard library is imported here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys

SOCKET_ENV = "REPROLAB_WARM_SOCKET"
FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
STDIO = (0, 1, 2)


def stage_module() -> str | None:
    """The `stages.*` module this process was started to run with `python -m`, while it is
    still being located (`sys.argv[0] == '-m'`); None for anything else."""
    if sys.argv[:1] != ["-m"]:
        return None
    orig = getattr(sys, "orig_argv", [])
    # only `python -m stages.x ...`: an interpreter option (-X, -W, -O) changes what a
    # forked copy of another interpreter would do
    if len(orig) < 3 or orig[1] != "-m":
        return None
    module = orig[2]
    if not module.startswith("stages.") or module.startswith("stages.runtime."):
        return None
    return module


def request(module: str) -> dict:
    return {
        "module": module,
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": _umask(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "path": sys.path,
    }


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _connect(path: str) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    return conn


def _stdio_open() -> bool:
    try:
        for fd in STDIO:
            os.fstat(fd)
    except OSError:
        return False
    return True


def _exit_like(kind: str, value: int):
    if kind == "signal":
        signal.signal(value, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [value])
        os.kill(os.getpid(), value)
        os._exit(128 + value)
    os._exit(value)


def hand_off() -> None:
    """Run this `python -m stages.<x>` in the warm interpreter and exit with its status;
    return (the caller goes on cold) where that is not possible."""
    module = stage_module()
    path = os.environ.get(SOCKET_ENV)
    if module is None or not path or not _stdio_open():
        return
    conn = _connect(path)
    if conn is None:
        return
    # a signal before the stage's pid is known waits, then goes to the stage (or, run
    # cold, to this process as usual)
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        replies = conn.makefile("rb")
        stage_pid = _start(conn, replies, module)
        if stage_pid is None:
            return
        _forward_to(stage_pid)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    for line in replies:
        kind, _, value = line.decode().strip().partition(" ")
        if kind in ("exit", "signal"):
            _exit_like(kind, int(value))
    print(f"{module}: the warm interpreter lost the stage (pid {stage_pid})", file=sys.stderr)
    os._exit(1)


def _start(conn: socket.socket, replies, module: str) -> int | None:
    """Send the request; the forked stage's pid, or None to run cold here."""
    payload = json.dumps(request(module)).encode()
    try:
        socket.send_fds(conn, [struct.pack("!Q", len(payload))], list(STDIO))
        conn.sendall(payload)
        first = replies.readline()  # "pid N" or "cold <reason>"
    except OSError:
        first = b""
    kind, _, value = first.decode().strip().partition(" ")
    if kind == "pid":
        return int(value)
    replies.close()
    conn.close()
    if kind == "cold":
        print(f"{module}: running cold ({value})", file=sys.stderr)
    return None  # nothing was started: the warm interpreter refused or went away


def _forward_to(stage_pid: int) -> None:
    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            os.kill(stage_pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
