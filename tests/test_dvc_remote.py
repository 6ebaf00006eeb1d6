"""DVC remote round trip: push a pipeline's outputs, clone + pull elsewhere, nothing re-runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import pipeline_env, write_params

pytestmark = pytest.mark.integration

TINY = {"augment": {"multiplier": 2, "sample_grid": 4}}
STAGES = ("prepare", "augment")
OUTS = ("data/prepared", "data/augmented")


def run(cwd: Path, env: dict[str, str], *cmd: str) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return res.stdout + res.stderr


def dvc(cwd: Path, env: dict[str, str], *args: str) -> str:
    return run(cwd, env, sys.executable, "-m", "dvc", *args)


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for out in OUTS
        for p in sorted((root / out).rglob("*"))
        if p.is_file()
    }


def test_push_clone_pull_reproduces_without_rerunning(repo_copy, tmp_path):
    env = pipeline_env(tmp_path)
    remote, clone = tmp_path / "remote", tmp_path / "teammate"
    write_params(repo_copy, TINY)
    dvc(repo_copy, env, "remote", "add", "-d", "local", str(remote))
    dvc(repo_copy, env, "repro", *STAGES)
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t")
    run(repo_copy, env, "git", "add", "-A")
    run(repo_copy, env, *git, "commit", "-qm", "results")
    pushed = dvc(repo_copy, env, "push", *STAGES)
    assert "pushed" in pushed and any(remote.rglob("*"))

    run(tmp_path, env, "git", "clone", "-q", str(repo_copy), str(clone))
    assert not (clone / "data/prepared").exists()  # outputs come from the remote, not git
    dvc(clone, env, "pull", *STAGES)
    assert tree(clone) == tree(repo_copy) and tree(clone)

    status = dvc(clone, env, "status", *STAGES)
    assert "up to date" in status
    again = dvc(clone, env, "repro", *STAGES)
    assert "Running stage" not in again
    assert "didn't change" in again or "up to date" in again
    assert run(clone, env, "git", "status", "--porcelain").strip() == ""  # dvc.lock as pushed
