"""Hostile and broken model files, through the real stage CLIs.

Faults: (1) a checkpoint / model file whose pickle payload would write a marker file;
(2) a truncated `last.ckpt` (a kill or full disk while Lightning wrote it); (3) both
checkpoints truncated. Expected: (1) refused with a message naming the file, exit 2, no
MLflow run, the marker never written; (2) training resumes from `best.ckpt`, the last good
state, and says so; (3) exit 2 naming both files and the fix, nothing deleted, never a
silent restart from scratch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, train_env

from lightning_modules.safe_load import CorruptFileError, UnsafeFileError, load_checked
from lightning_modules.serialization import load_network

pytestmark = pytest.mark.integration


class _Payload:
    """Unpickling this calls os.system: what an attacker would plant in a .ckpt/.pt."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "epoch": 0, "arch": "mlp", "x": _Payload(marker)}, path)
    return path


def test_planted_payload_is_refused_and_never_runs(tmp_path, reliability):
    marker = tmp_path / "pwned"
    evil = plant(tmp_path / "model.pt", marker)
    with pytest.raises(UnsafeFileError, match=r"model\.pt: refused to load.*posix\.system"):
        load_network(evil)
    with pytest.raises(UnsafeFileError):
        load_checked(evil)
    assert not marker.exists()
    reliability.record(
        "security",
        "a `model.pt` whose pickle runs `os.system` on load (planted payload)",
        "UnsafeFileError naming the file and the forbidden global; the payload never runs",
        before={"marker file": False},
        after={"marker file": marker.exists(), "loaders refusing": 2},
    )


def test_truncated_and_empty_files_are_named_as_corrupt(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"state_dict": {"w": torch.ones(64, 64)}}, good)
    data = good.read_bytes()
    for name, content in (("half.pt", data[: len(data) // 2]), ("empty.pt", b""), ("t.pt", b"hi")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CorruptFileError, match=rf"{name}: "):
            load_checked(tmp_path / name)


def _train_runs(tmp_path: Path) -> list:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("reprolab-digits")
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_train_resume_refuses_a_planted_checkpoint(train_cli, tmp_path, reliability):
    marker = tmp_path / "pwned"
    cmd, out = train_cli("evil", {"train": {"resume": True}})
    plant(out / "checkpoints" / "last.ckpt", marker)
    res = subprocess.run(cmd, cwd=tmp_path, env=train_env(tmp_path), capture_output=True, text=True)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "last.ckpt: refused to load" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists() and _train_runs(tmp_path) == []
    assert not (out / "model.pt").exists()
    reliability.record(
        "security",
        "planted malicious `last.ckpt`, then `train.resume: true`",
        "exit 2 before any run: `last.ckpt: refused to load`; payload never runs",
        before={"MLflow runs": 0, "marker file": False},
        after={
            "exit": res.returncode,
            "MLflow runs": len(_train_runs(tmp_path)),
            "marker file": marker.exists(),
            "model.pt": False,
        },
    )


def test_compress_refuses_a_planted_model_before_any_run(tmp_path, reliability):
    marker = tmp_path / "pwned"
    evil = plant(tmp_path / "models" / "model.pt", marker)
    res = subprocess.run(
        [sys.executable, "-m", "stages.compress", "--model", str(evil)],
        cwd=REPO,
        env=train_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2, res.stderr[-2000:]
    assert "model.pt: refused to load" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists() and _train_runs(tmp_path) == []
    reliability.record(
        "security",
        "planted malicious `models/model.pt` given to `stages.compress`",
        "exit 2 before any MLflow run: `model.pt: refused to load`; payload never runs",
        before={"MLflow runs": 0, "marker file": False},
        after={"exit": res.returncode, "MLflow runs": 0, "marker file": marker.exists()},
    )


def test_truncated_last_ckpt_falls_back_to_best_never_to_scratch(train_cli, tmp_path, reliability):
    env = train_env(tmp_path)
    fixed = {"scheduler": {"name": "none"}}  # onecycle cannot be stretched to more epochs
    cmd, out = train_cli("cut", {"train": {"max_epochs": 3, **fixed}})
    assert subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True).returncode == 0
    last, best = out / "checkpoints" / "last.ckpt", out / "checkpoints" / "best.ckpt"
    best_epoch = torch.load(best, weights_only=True)["epoch"]
    last.write_bytes(last.read_bytes()[:1000])  # torn write

    cmd, _ = train_cli("cut", {"train": {"max_epochs": 5, "resume": True, **fixed}})
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "last.ckpt: truncated or corrupt" in res.stderr
    assert f"resuming from the last good state {best} (epoch {best_epoch})" in res.stderr
    assert json.loads((out / "train.json").read_text())["epochs"] == 5
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 5
    runs = _train_runs(tmp_path)
    assert len(runs) == 1  # the first run, continued: its id travels in best.ckpt too

    for path in (last, best):
        path.write_bytes(path.read_bytes()[:1000])
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "no checkpoint in" in res.stderr and "train.resume: false" in res.stderr
    assert last.exists() and best.exists()  # nothing deleted, nothing restarted
    assert len(_train_runs(tmp_path)) == 1
    reliability.record(
        "fault",
        "torn `last.ckpt` (cut to 1000 bytes), then `train.resume: true`",
        f"warning names the file; resumes from `best.ckpt` (epoch {best_epoch}), the same "
        "MLflow run continues to the end",
        before={"epochs done": 3, "MLflow runs": 1},
        after={"epochs done": 5, "MLflow runs": len(runs), "history rows": 5},
    )
    reliability.record(
        "fault",
        "both `last.ckpt` and `best.ckpt` torn, then `train.resume: true`",
        "exit 2 naming both files and the fix (`train.resume: false`); nothing deleted, "
        "never a silent restart from scratch",
        before={"checkpoint files": 2, "MLflow runs": 1},
        after={
            "exit": res.returncode,
            "checkpoint files": 2,
            "MLflow runs": len(_train_runs(tmp_path)),
        },
    )


def test_resume_with_another_length_under_a_whole_run_schedule_is_refused(
    train_cli, tmp_path, reliability
):
    env = train_env(tmp_path)
    onecycle = {"scheduler": {"name": "onecycle"}}
    cmd, out = train_cli("len", {"train": {"max_epochs": 1, **onecycle}})
    assert subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True).returncode == 0
    cmd, _ = train_cli("len", {"train": {"max_epochs": 2, "resume": True, **onecycle}})
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "train.max_epochs was 1 when this run started, now 2" in res.stderr
    assert len(_train_runs(tmp_path)) == 1
    # other fit rows (the run started on train+val, the default) would not finish that run
    cmd, _ = train_cli("len", {"train": {"resume": True, "fit_on": "train", **onecycle}})
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "train.fit_on was 'train+val' when this run started, now 'train'" in res.stderr
    assert len(_train_runs(tmp_path)) == 1
    reliability.record(
        "fault",
        "`train.max_epochs` changed 1 -> 2 before a resume under onecycle",
        "exit 2 naming the old and new value (the restored schedule would overrun)",
        before={"MLflow runs": 1},
        after={"exit": res.returncode, "MLflow runs": len(_train_runs(tmp_path))},
    )
