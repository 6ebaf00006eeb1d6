"""Load: 8 concurrent local tune workers on the default storage (journal file for the
study, sqlite for MLflow) run 200 short trials. Must hold: no "database is locked" or
traceback in any worker's output, exactly 200 finished trials, none RUNNING, and one
FINISHED MLflow run per trial. The checks live in `benchmarks/tune_load.py` (also run by
hand for RESULTS.md); this test runs it as is and fails on any of them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.integration


def test_eight_workers_two_hundred_trials_lose_nothing(tmp_path, reliability):
    res = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/tune_load.py"),
            "--workers",
            "8",
            "--trials",
            "200",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "{'COMPLETE': 200}" in res.stdout or "'PRUNED'" in res.stdout
    assert "200 trial runs (200 FINISHED)" in res.stdout and "| OK |" in res.stdout
    table = [line for line in res.stdout.splitlines() if "| OK |" in line][-1]
    reliability.record(
        "load",
        "8 concurrent local tune workers, default storage (journal study + sqlite MLflow), "
        "200 one-epoch trials",
        'no "database is locked", no traceback; exactly 200 finished trials; every trial '
        "run in MLflow",
        before={"trials": 0},
        after={"benchmark row": table.strip()},
    )
