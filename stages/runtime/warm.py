"""`python -m stages.runtime.warm -- dvc repro`: the stages of one command, forked from an
interpreter that has imported their libraries once.

A stage process spends 3-7 s importing torch, Lightning, MLflow and scikit-learn before
its first line of work, and `dvc repro` (or `dvc exp run`) starts one per stage. This
command starts a server that imports those libraries (`PRELOAD`), then runs the given
command with `REPROLAB_WARM_SOCKET` pointing at it. Each `python -m stages.<x>` the
command starts hands itself over (`warm_client.py`); the server forks a handler, the
handler forks the stage, and the stage (`warm_stage.py`):

- takes the client's stdin/stdout/stderr, working directory, umask, environment and argv;
- drops every module not installed in the interpreter (the project's own code), so an
  edit made while the server runs is what the stage imports, as in a fresh process;
- runs the module as `__main__`, then exits as Python would (non-daemon threads joined,
  atexit handlers run, streams flushed).

The handler relays the stage's exit status (or the signal that ended it) to the client,
and kills the stage if the client dies without a word (kill -9). A request from another
interpreter, or with a different value of a variable read at start-up or import
(`MUST_MATCH`), is answered "cold" and the client runs the stage itself. Only the server
is warm: the project's modules are never imported into it, so nothing of them can go stale.
The socket lives in a private (0700) temporary folder and goes with the command.

`REPROLAB_WARM=0` runs the command without a server; `REPROLAB_WARM_LOG=FILE` has the server
write one line per stage it ran (or sent back cold) to FILE.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from stages.runtime import warm_stage
from stages.runtime.warm_client import SOCKET_ENV

# the libraries the stages import, in the order the pipeline first needs them: requests
# are served between two imports, so validate forks as soon as scikit-learn is in
PRELOAD = (
    "yaml",
    "pydantic",
    "pandas",
    "scipy.stats",
    "sklearn.base",
    "sklearn.tree",
    "sklearn.neighbors",
    "mlflow",  # prepare
    "mlflow.store.tracking.sqlalchemy_store",
    "pyarrow.parquet",
    "PIL.Image",
    "torch",  # augment
    "kornia",
    "sklearn.ensemble",  # baselines
    "sklearn.linear_model",
    "sklearn.svm",
    "sklearn.inspection",
    "sklearn.metrics",
    "skops.io",
    "lightning.pytorch",  # tune, train
    "torchmetrics",
    "optuna",
    "onnx",  # compress
    "onnxruntime",
    "onnxruntime.quantization",
    "mlflow.pyfunc",  # package
    "mlflow.models",
)
# read when the interpreter starts or a preloaded library is imported: a stage whose value
# differs from the server's would not run as it would cold
MUST_MATCH = ("PYTHON", "LD_", "LC_", "LANG", "MALLOC_", "OMP_", "MKL_", "OPENBLAS_", "KMP_",
              "GOMP_", "CUDA_", "TORCH", "PYTORCH_")  # fmt: skip
MAY_DIFFER = ("PYTHONUNBUFFERED",)  # the server's streams are unbuffered either way
DISABLE_ENV = "REPROLAB_WARM"
LOG_ENV = "REPROLAB_WARM_LOG"  # a file: one line per stage served (tests read it)
REQUEST_MAX = 16 << 20


def _read_env_keys(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(MUST_MATCH) and k not in MAY_DIFFER}


# as this interpreter started, before a preloaded library could change them (scikit-learn
# sets KMP_DUPLICATE_LIB_OK, for one)
START_PATH = list(sys.path)
START_ENV = dict(os.environ)


def refusal(req: dict) -> str | None:
    """Why this server cannot run `req` as the client would run it cold; None if it can."""
    if req["executable"] != sys.executable or req["prefix"] != sys.prefix:
        return f"interpreter {req['executable']} is not the warm one's {sys.executable}"
    if req["path"][1:] != START_PATH[1:]:
        return "sys.path differs from the warm interpreter's"
    # a value the preloaded imports set themselves (KMP_DUPLICATE_LIB_OK) matches either way
    before, after = _read_env_keys(START_ENV), _read_env_keys(dict(os.environ))
    theirs = _read_env_keys(req["env"])
    for key in sorted(set(before) | set(after) | set(theirs)):
        if theirs.get(key) not in (before.get(key), after.get(key)):
            return f"{key} differs from the warm interpreter's"
    return None


def preload(modules=PRELOAD, between=lambda: None) -> list[str]:
    """Import what can be imported of `modules`, calling `between()` after each; the names
    that could not be imported."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # an optional library absent or broken: its stages import it cold
            missing.append(name)
        between()
    return missing


def import_time_env() -> dict[str, str]:
    """The variables the preloaded imports set: a stage importing them cold would have them."""
    return {k: v for k, v in os.environ.items() if START_ENV.get(k) != v}


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    head, fds, _flags, _addr = socket.recv_fds(conn, 8, 3)
    while len(head) < 8:
        more = conn.recv(8 - len(head))
        if not more:
            raise ConnectionError("request cut short")
        head += more
    (size,) = struct.unpack("!Q", head)
    if size > REQUEST_MAX or len(fds) != 3:
        raise ConnectionError(f"bad request: {size} bytes, {len(fds)} descriptors")
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(min(1 << 20, size - len(data)))
        if not chunk:
            raise ConnectionError("request cut short")
        data += chunk
    return json.loads(data), fds


def _wait(conn: socket.socket, stage: int) -> str | None:
    """The stage's end as a reply line ("exit N", "signal N"); None if the client went
    first, and the stage is killed."""
    try:
        ended = [os.pidfd_open(stage)]
    except OSError:  # kernels before 5.3: look every 50 ms
        ended = []
    while True:
        ready, _, _ = select.select([conn, *ended], [], [], None if ended else 0.05)
        if ended and ended[0] in ready:
            break
        if conn in ready and not conn.recv(1):  # the client died without a word (kill -9)
            os.kill(stage, signal.SIGKILL)
            os.waitpid(stage, 0)
            return None
        if not ended:
            done, status = os.waitpid(stage, os.WNOHANG)
            if done:
                break
    if ended:
        _, status = os.waitpid(stage, 0)
    code = os.waitstatus_to_exitcode(status)
    return f"signal {-code}" if code < 0 else f"exit {code}"


def _handle(conn: socket.socket, log) -> None:
    """In the forked handler: read the request, fork the stage, relay its end."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    req, fds = _recv_request(conn)
    why = refusal(req)
    if why:  # logged first: the client may be gone the moment it has the answer
        log(f"cold {req['module']}: {why}")
        conn.sendall(f"cold {why}\n".encode())
        return
    stage = os.fork()
    if stage == 0:
        try:
            conn.close()
            warm_stage.become_stage(req, fds, import_time_env())
        except BaseException:
            traceback.print_exc()  # the client's stderr, once the descriptors are taken
        finally:
            os._exit(1)  # never back into the server's frames (its `finally` owns the socket)
    for fd in fds:
        os.close(fd)
    conn.sendall(f"pid {stage}\n".encode())
    started = time.monotonic()
    end = _wait(conn, stage)
    seconds = time.monotonic() - started
    log(f"ran {req['module']} pid={stage} seconds={seconds:.2f} {end or 'killed: client gone'}")
    if end:
        with contextlib.suppress(OSError):
            conn.sendall(f"{end}\n".encode())


def serve(path: str, log_path: str | None = None) -> None:
    """Listen on `path` at once, import the libraries, and fork a handler per connection
    (between two imports while they load) until SIGTERM."""

    def log(line: str) -> None:
        if log_path:
            with open(log_path, "a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} warm {line}\n")

    def stop(_signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    log(f"listening socket={path}")

    def fork_handler(conn: socket.socket) -> None:
        conn.setblocking(True)
        if os.fork() == 0:
            listener.close()
            try:
                _handle(conn, log)
            except BaseException as exc:  # one bad request is one failed stage
                log(f"handler failed: {exc!r}")
                os._exit(1)
            os._exit(0)
        conn.close()

    def waiting() -> None:  # a stage that asks mid-preload forks from what is imported so far
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return
            fork_handler(conn)

    try:
        started = time.monotonic()
        listener.setblocking(False)
        missing = preload(between=waiting)
        listener.setblocking(True)
        log(f"preloaded seconds={time.monotonic() - started:.2f} missing={missing}")
        while True:
            fork_handler(listener.accept()[0])
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)


def _wait_for(path: Path, server: subprocess.Popen, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def run(command: list[str]) -> int:
    """Run `command` with a warm server beside it; its exit status."""
    if os.environ.get(DISABLE_ENV, "1").lower() in ("0", "off", "false", "no"):
        return subprocess.call(command)
    folder = Path(tempfile.mkdtemp(prefix="reprolab-warm-"))  # 0700
    sock = folder / "socket"
    env = {k: v for k, v in os.environ.items() if k != SOCKET_ENV}
    log = ["--log", os.environ[LOG_ENV]] if os.environ.get(LOG_ENV) else []
    server = subprocess.Popen(
        [sys.executable, "-m", "stages.runtime.warm", "--serve", str(sock), *log],
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C reaches the stages through their clients only
    )
    try:
        _wait_for(sock, server)
        child = subprocess.Popen(command, env={**env, SOCKET_ENV: str(sock)})
        # Ctrl-C reaches the command from the terminal; a SIGTERM to this process is passed on
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda s, _f: child.send_signal(s))
        signal.signal(signal.SIGHUP, lambda s, _f: child.send_signal(s))
        code = child.wait()
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)
    return 128 - code if code < 0 else code


USAGE = "usage: python -m stages.runtime.warm [--] COMMAND [ARGS...]"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--serve"] and len(args) in (2, 4):
        serve(args[1], args[3] if len(args) == 4 and args[2] == "--log" else None)
        return 0
    if args[:1] == ["--"]:
        args = args[1:]
    if not args or args[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
