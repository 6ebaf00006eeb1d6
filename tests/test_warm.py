"""Stages forked from the warm interpreter (`python -m stages.runtime.warm`): the same
results, output, exit codes and signal handling as a fresh process, the project's code
as it is on disk at each start, and a cold run wherever the warm one cannot match it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, run_stage, train_env

from stages.runtime.warm_client import SOCKET_ENV

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Warm:
    socket: Path
    log: Path
    server: subprocess.Popen

    def served(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def env(self, tmp_path: Path, **extra: str) -> dict[str, str]:
        return train_env(tmp_path) | {SOCKET_ENV: str(self.socket), **extra}


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warm")
    sock, log = folder / "socket", folder / "served.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "stages.runtime.warm", "--serve", str(sock), "--log", str(log)],
        env=train_env(folder),  # the tests' clients differ from it only in what may differ
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sock.exists(), "the warm server did not listen"
    yield Warm(sock, log, server)
    server.terminate()
    server.wait(20)
    assert not sock.exists()  # the server removes its socket on SIGTERM


def _stage_lines(stderr: str, out: Path) -> list[str]:
    """The stage's log lines, without their clock times, run ids, timings and out folder."""
    lines = [ln for ln in stderr.splitlines() if re.match(r"\d\d:\d\d:\d\d train ", ln)]
    return [re.sub(r"\d+\.\d+|[0-9a-f]{32}", "#", ln[9:].replace(str(out), "OUT")) for ln in lines]


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_a_warm_stage_trains_and_logs_as_a_fresh_process(train_cli, tmp_path, warm):
    epochs = {"train": {"max_epochs": 3}}
    cold_cmd, cold = train_cli("cold", epochs)
    warm_cmd, hot = train_cli("warm", epochs)
    ran_cold = subprocess.run(
        cold_cmd, cwd=tmp_path, env=train_env(tmp_path), capture_output=True, text=True
    )
    ran_warm = subprocess.run(
        warm_cmd, cwd=tmp_path, env=warm.env(tmp_path), capture_output=True, text=True
    )
    assert ran_cold.returncode == 0, ran_cold.stderr[-3000:]
    assert ran_warm.returncode == 0, ran_warm.stderr[-3000:]
    assert any("ran stages.train pid=" in line for line in warm.served())
    # the same weights, metrics and log lines (Lightning's in the stage's format)
    a, b = _state(cold / "model.pt"), _state(hot / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = [json.loads((d / "train.json").read_text()) for d in (cold, hot)]
    assert metrics[0]["val/acc"] == metrics[1]["val/acc"]
    assert _stage_lines(ran_warm.stderr, hot) == _stage_lines(ran_cold.stderr, cold)
    assert "train INFO GPU available" in ran_warm.stderr
    assert "💡" not in ran_warm.stderr


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_client_reaches_the_stage(train_cli, tmp_path, warm, sig, code):
    cmd, out = train_cli("cut", {"train": {"max_epochs": 200}})
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=warm.env(tmp_path), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for(out / "checkpoints" / "last.ckpt", proc)
    assert len(_descendants(warm.server.pid)) == 2  # the stage and its handler, not this client
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr[-3000:]
    assert "MLflow run marked KILLED" in stderr


def test_a_client_killed_outright_takes_its_stage_with_it(train_cli, tmp_path, warm):
    cmd, out = train_cli("killed", {"train": {"max_epochs": 500}})
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=warm.env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    last = out / "checkpoints" / "last.ckpt"
    _wait_for(last, proc)
    assert len(_descendants(warm.server.pid)) == 2
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while _descendants(warm.server.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _descendants(warm.server.pid)
    written = last.stat().st_mtime_ns
    time.sleep(1.0)
    assert last.stat().st_mtime_ns == written  # no epoch ended after the kill


def test_an_edit_made_while_the_server_runs_is_what_the_stage_runs(tmp_path, warm):
    project = tmp_path / "project"
    shutil.copytree(REPO / "stages", project / "stages")
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    env = warm.env(tmp_path)
    first = _config(project, env)
    assert first.returncode == 0, first.stderr
    main = project / "stages" / "config" / "__main__.py"
    main.write_text(main.read_text().replace("def main(", "print('EDITED')\n\n\ndef main(", 1))
    second = _config(project, env)
    assert second.returncode == 0, second.stderr
    assert "EDITED" not in first.stdout and second.stdout.startswith("EDITED")
    assert sum("ran stages.config" in line for line in warm.served()) >= 2
    # an error exits with the stage's own code and message, as cold
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["max_epochs"] = "many"
    (project / "bad.yaml").write_text(yaml.safe_dump(params))
    warm_bad = _config(project, env, "bad.yaml")
    cold_bad = _config(project, train_env(tmp_path), "bad.yaml")
    assert warm_bad.returncode == cold_bad.returncode == 2
    assert warm_bad.stderr == cold_bad.stderr and "train.max_epochs" in warm_bad.stderr


def test_what_the_warm_interpreter_cannot_match_runs_cold(tmp_path, warm):
    project = tmp_path / "project"
    shutil.copytree(REPO / "stages", project / "stages")
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    other_seed = _config(project, warm.env(tmp_path, PYTHONHASHSEED="123"))
    assert other_seed.returncode == 0, other_seed.stderr
    assert "running cold (PYTHONHASHSEED differs" in other_seed.stderr
    assert any(line.endswith("PYTHONHASHSEED differs from the warm interpreter's")
               for line in warm.served())  # fmt: skip
    # no server at the socket's path: the stage runs here, as if none had been asked for
    gone = _config(project, warm.env(tmp_path) | {SOCKET_ENV: str(tmp_path / "no-socket")})
    assert gone.returncode == 0, gone.stderr
    assert "running cold" not in gone.stderr


def test_the_command_wrapper_serves_and_cleans_up(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(REPO / "stages", project / "stages")
    (project / "bad.yaml").write_text("train: {max_epochs: many}\n")
    log = tmp_path / "served.log"
    env = train_env(tmp_path) | {"REPROLAB_WARM_LOG": str(log)}
    res = subprocess.run(
        [sys.executable, "-m", "stages.runtime.warm", "--", sys.executable, "-m",
         "stages.config", "bad.yaml"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    served = log.read_text()
    assert "ran stages.config" in served
    socket = Path(re.search(r"socket=(\S+)", served).group(1))
    assert not socket.parent.exists()  # the private folder goes with the command


def _config(project: Path, env: dict[str, str], params: str = "params.yaml"):
    return run_stage("config", project, env, params, timeout=120)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), f"no {path} (exit {proc.poll()})"


def _descendants(pid: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, ppid in parents.items() if ppid in frontier]
        found += children
        frontier = children
    return found
