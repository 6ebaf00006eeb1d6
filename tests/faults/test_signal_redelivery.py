"""A signal whose exception Python drops inside a finalizer is sent again, not lost.

Seen in the tune stage: SIGTERM landed while a Lightning profiler's `__del__` ran; Python
printed "Exception ignored in ..." and the trial went on blocking, so the stage never
exited. Here a `__del__` sends the signal to its own process and lets the handler run
inside it; the main code must still get the exception, and nothing is printed as ignored.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

PROGRAM = """
import gc, os, signal, time
from stages.runtime.signals import Terminated, signals_as_exceptions

class SignalsInFinalizer:
    def __del__(self):
        os.kill(os.getpid(), signal.{name})
        time.sleep(0.2)  # the handler runs here, so its exception is raised in __del__

with signals_as_exceptions():
    try:
        SignalsInFinalizer()  # no reference kept: finalized at once
        gc.collect()
        for _ in range(50):
            time.sleep(0.1)
        print("LOST")
    except (Terminated, KeyboardInterrupt) as exc:
        print("CAUGHT", type(exc).__name__)
"""


def _python(program: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("name", "expected"), [("SIGTERM", "Terminated"), ("SIGINT", "KeyboardInterrupt")]
)
def test_signal_dropped_in_a_finalizer_reaches_the_main_code(name, expected, reliability):
    res = _python(PROGRAM.format(name=name))
    assert res.stdout.strip() == f"CAUGHT {expected}", res.stdout + res.stderr
    assert "Exception ignored" not in res.stderr, res.stderr
    reliability.record(
        "fault",
        f"{name} handled while a `__del__` runs (Python drops exceptions raised there)",
        "the signal is sent again and its exception reaches the main code; no "
        "'Exception ignored' line",
        before={"delivered in": "__del__"},
        after={"caught": expected},
    )


IN_CODE_THAT_MUST_FINISH = """
import os, signal, time, types
from stages.runtime.signals import Terminated, signals_as_exceptions

def finish():
    os.kill(os.getpid(), signal.{name})
    time.sleep(0.5)  # the signal arrives here, "inside {module}"
    return "finished"

# the same function, as if defined in module {module} (the handler looks at __name__)
finish = types.FunctionType(finish.__code__, {{**globals(), "__name__": "{module}"}})

with signals_as_exceptions():
    done = "interrupted"
    try:
        done = finish()
        for _ in range(50):
            time.sleep(0.1)
        print("LOST")
    except (Terminated, KeyboardInterrupt) as exc:
        print(done, type(exc).__name__)
"""


@pytest.mark.parametrize(
    ("name", "expected"), [("SIGTERM", "Terminated"), ("SIGINT", "KeyboardInterrupt")]
)
def test_signal_inside_database_code_waits_for_it_to_return(name, expected, reliability):
    """SQLAlchemy rolls back on Exception only: an exception thrown into a commit would keep
    sqlite's write lock, and the stage could not then end its run KILLED."""
    res = _python(IN_CODE_THAT_MUST_FINISH.format(name=name, module="sqlalchemy.orm.fake"))
    assert res.stdout.strip() == f"finished {expected}", res.stdout + res.stderr
    reliability.record(
        "fault",
        f"{name} while the main thread is inside SQLAlchemy (a commit)",
        "the exception is raised once that code returns: no transaction left open, the "
        "run can be ended KILLED",
        before={"delivered in": "sqlalchemy"},
        after={"commit": "completed", "caught": expected},
    )


SWALLOWED = """
import argparse, os, signal, sys, time
from pathlib import Path
from stages.common.io import atomic_file
from stages.runtime.cli import run_main
from stages.runtime.signals import signals_as_exceptions

def library_code():
    try:  # a library that catches BaseException around its work
        os.kill(os.getpid(), signal.{name})
        time.sleep(0.5)
    except BaseException:
        pass

def body(args):
    out = Path(args.out)
    with signals_as_exceptions():
        library_code()
        print("RAN ON", flush=True)
        try:
            with atomic_file(out) as tmp:
                tmp.write_text("new")
        except BaseException as exc:
            print("REFUSED", type(exc).__name__, flush=True)
        raise KeyboardInterrupt  # what Lightning turns any interruption into

ap = argparse.ArgumentParser()
ap.add_argument("--out")
ap.set_defaults(path_options=[])
sys.exit(run_main("demo", body, ap, ["--out", sys.argv[1]]))
"""


@pytest.mark.parametrize(("name", "code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_swallowed_signal_still_stops_the_stage(name, code, tmp_path, reliability):
    """A library that catches BaseException drops the signal's exception; the signal stays
    pending: no output commits after it, and the exit code and log name the signal sent,
    even when a KeyboardInterrupt is what reaches the stage's entry point."""
    out = tmp_path / "out.txt"
    out.write_text("old")
    res = subprocess.run(
        [sys.executable, "-c", SWALLOWED.format(name=name), str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == code, res.stdout + res.stderr
    expected = "Terminated" if name == "SIGTERM" else "KeyboardInterrupt"
    assert res.stdout.split() == ["RAN", "ON", "REFUSED", expected], res.stdout + res.stderr
    assert out.read_text() == "old" and list(tmp_path.iterdir()) == [out]
    assert f"({name}); MLflow run marked KILLED" in res.stderr, res.stderr
    reliability.record(
        "fault",
        f"{name} whose exception a library swallows (`except BaseException`)",
        "the signal stays pending: outputs refuse to commit, training stops at the next "
        "batch, the exit code and log line name the signal sent",
        before={"swallowed by": "library code", "reached the entry point": "KeyboardInterrupt"},
        after={"output": "old content kept", "exit": code},
    )


@pytest.mark.parametrize("module", ["importlib._bootstrap", "importlib._bootstrap_external"])
def test_signal_inside_the_import_machinery_waits_for_it_to_return(module, reliability):
    """Raised between taking a module's import lock and releasing it, the exception left
    the lock held: MLflow's system-metrics thread then waited on it forever, and the stage,
    joining that thread in its cleanup, hung after SIGTERM (seen in a stress run)."""
    res = _python(IN_CODE_THAT_MUST_FINISH.format(name="SIGTERM", module=module))
    assert res.stdout.strip() == "finished Terminated", res.stdout + res.stderr
    reliability.record(
        "fault",
        f"SIGTERM while the main thread is in `{module}`'s own code (import locks)",
        "the exception is raised once that code returns: no import lock left held, no "
        "thread left waiting on it, the stage exits 143",
        before={"delivered in": module},
        after={"import bookkeeping": "completed", "caught": "Terminated"},
    )
