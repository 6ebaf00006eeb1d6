"""Bad params through the real tune / train / config CLIs (the prepare CLI has its own
matrix in test_prepare_cli.py). Each refused case exits 2 before any compute, prints one
paragraph naming the file and the dotted key (no traceback), and creates no MLflow store
at all; the accepted case validates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

LR_RANGE = "train.optimizer.lr: {type: float, low: 0.001, high: 0.1}"
CASES = [
    ("tune", "tune:\n  search_space: {}\n", ("p.yaml", "search_space is empty")),
    (
        "tune",
        "tune:\n  search_space:\n    train.optimizer.lrr: {type: float, low: 0.001, high: 0.1}\n",
        (
            "p.yaml",
            "'train.optimizer.lrr' is not a params key",
            "did you mean 'train.optimizer.lr'",
        ),
    ),
    (
        "tune",
        "tune:\n  search_space:\n    train.optimizer.lr: {type: float, low: 0.1, high: 0.001}\n",
        ("tune.search_space.train.optimizer.lr", "low=0.1 is greater than high=0.001"),
    ),
    (
        "tune",
        f"tune:\n  search_space:\n    {LR_RANGE}\n    model.width: {{type: int, low: 8}}\n",
        ("tune.search_space.model.width",),
    ),
    ("train", "train:\n  batch_size: 0\n", ("p.yaml", "train.batch_size")),
    ("train", "train:\n  optimizer: {lr: -1}\n", ("p.yaml", "train.optimizer.lr")),
    ("train", "train:\n  optimizer: {lr: 0}\n", ("p.yaml", "train.optimizer.lr")),
    ("train", "model:\n  arch: resnt\n", ("p.yaml", "model.arch", "resnet")),
    ("train", "train:\n  max_epoch: 3\n", ("p.yaml", "did you mean 'train.max_epochs'")),
]


def _run(tmp: Path, stage: str, text: str) -> subprocess.CompletedProcess:
    (tmp / "p.yaml").write_text(text)
    shutil.copy(REPO / "dvc.yaml", tmp)  # a project root: the stage reads its paths from it
    env = dict(os.environ, PYTHONPATH=str(REPO), MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/m.db")
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", "--params", "p.yaml"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("stage", "text", "expected"), CASES)
def test_refused_before_any_run(tmp_path, stage, text, expected, reliability):
    res = _run(tmp_path, stage, text)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    for fragment in expected:
        assert fragment in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "mlruns").exists()
    said = next(line for line in res.stderr.splitlines() if expected[-1] in line).strip()
    reliability.record(
        "bad input",
        f"{stage}: `{' '.join(text.split())}`",
        f"exit 2 before any compute: `{said[:150]}`",
        before={"MLflow store": False},
        after={"exit": res.returncode, "MLflow store": False, "trials": 0},
    )


def test_exponent_string_from_dvc_exp_is_accepted(tmp_path, reliability):
    """`dvc exp run -S train.optimizer.lr=1e-06` writes the string '1e-06'."""
    (tmp_path / "p.yaml").write_text("train:\n  optimizer: {lr: '1e-06'}\n")
    res = subprocess.run(
        [sys.executable, "-m", "stages.config", "p.yaml"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    reliability.record(
        "bad input",
        "`train.optimizer.lr: '1e-06'` (a string, as `dvc exp run -S` writes it)",
        "accepted as the float 1e-06",
        before={},
        after={"exit": res.returncode},
    )
