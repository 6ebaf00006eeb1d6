"""The stage side of `stages.runtime.warm`: a process just forked from the warm interpreter
becomes the `python -m stages.<x>` its client was started as.

It takes the client's stdin/stdout/stderr, working directory, umask, environment and argv,
forgets every module that is not installed in the interpreter (the project's own code, so
an edit made while the server runs is what it imports, as a fresh process would), runs the
module as `__main__`, and exits as Python would: non-daemon threads joined, atexit handlers
run, streams flushed, an uncaught KeyboardInterrupt ending it by SIGINT.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import traceback


def _installed(module) -> bool:
    """True for a module of the interpreter or its site-packages (kept in the stage)."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    where = [getattr(module, "__file__", None)]
    with contextlib.suppress(TypeError):  # torch._classes answers any attribute
        where += list(getattr(module, "__path__", None) or [])
    where = [w for w in where if isinstance(w, str) and w]
    if not where:
        return True  # builtin or frozen
    return all(any(os.path.abspath(w).startswith(r + os.sep) for r in roots) for w in where)


def drop_project_modules() -> list[str]:
    """Forget every imported module that is not installed: the stage imports its own."""
    gone = [
        name
        for name, module in list(sys.modules.items())
        if name != "__main__" and module is not None and not _installed(module)
    ]
    for name in gone:
        del sys.modules[name]
    return gone


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _finish(code: int, kill_with: int | None = None) -> None:
    """Exit as the interpreter would at the end of a script."""
    with contextlib.suppress(BaseException):
        threading._shutdown()  # joins non-daemon threads, as Py_Finalize does first
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    if kill_with is not None:  # an uncaught KeyboardInterrupt: die of SIGINT, as Python does
        signal.signal(kill_with, signal.SIG_DFL)
        os.kill(os.getpid(), kill_with)
    os._exit(code)


def become_stage(req: dict, fds: list[int], import_env: dict[str, str]) -> None:
    """In the forked stage process: take the client's place, run its module, exit.

    `import_env`: the variables the warm interpreter's imports set, which a stage importing
    the same libraries cold would have (unless its own environment sets them)."""
    for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=stream.isatty())
    try:
        os.chdir(req["cwd"])
        os.umask(req["umask"])
        os.environ.clear()
        os.environ.update(req["env"])
        for key, value in import_env.items():
            os.environ.setdefault(key, value)
        sys.path[:] = req["path"]
        drop_project_modules()
        sys.argv = [req["module"], *req["argv"]]
    except OSError as exc:
        print(f"{req['module']}: cannot start in {req['cwd']}: {exc}", file=sys.stderr)
        _finish(1)
    import runpy

    try:
        runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        _finish(_exit_code(exc))
    except KeyboardInterrupt:
        traceback.print_exc()
        _finish(130, kill_with=signal.SIGINT)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        _finish(1)
    _finish(0)
