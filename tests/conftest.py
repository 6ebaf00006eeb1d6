"""Shared fixtures: build the real config, then shrink it; tracking goes to tmp_path."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stages import config

REPO = Path(__file__).resolve().parents[1]


def deep_update(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def shipped_params() -> dict[str, Any]:
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture
def make_params(shipped_params, tmp_path):
    """make_params({"data": {...}}) -> validated Params; data paths resolve from tmp_path."""

    def build(overrides: dict[str, Any] | None = None) -> config.Params:
        raw = deep_update(shipped_params, overrides or {})
        return config.validate(raw, tmp_path / "params.yaml")

    return build


@pytest.fixture(autouse=True)
def _mlflow_uri_stays_in_its_test():
    """MLflow keeps `set_tracking_uri` in a module global (and os.environ), above the
    environment variable: a test that opened a stage run in-process would otherwise point
    every later `MlflowClient()` of this process at its own, deleted store."""
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    before = utils._tracking_uri if utils else None
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if utils is not None and utils._tracking_uri != before:
        utils.set_tracking_uri(before)
    if env_before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = env_before


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    """The git-tracked + new project files copied into a fresh git repo in tmp_path."""
    return copy_repo(tmp_path / "repo")


def copy_repo(dest: Path) -> Path:
    """The git-tracked + new project files copied into a fresh git repo at `dest`."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
    ):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def pipeline_env(tmp_path: Path) -> dict[str, str]:
    """Environment for `dvc repro` in a repo copy: this venv's tools, tracking in tmp_path."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("REPROLAB_PIPELINE_ID", None)
    return env


def run_dvc(repo: Path, env: dict[str, str], *args: str, check: bool = True, timeout: int = 900):
    """`dvc <args>` in `repo` with this venv's dvc; a failure fails the test with its output."""
    res = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return res


def run_stage(stage: str, cwd: Path, env: dict[str, str], *args: str, timeout: int = 900):
    """`python -m stages.<stage> <args>` in `cwd`, run to the end; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_stage(stage: str, cwd: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    """`python -m stages.<stage> <args>` started in `cwd` (stderr piped, stdout dropped)."""
    return subprocess.Popen(
        [sys.executable, "-m", f"stages.{stage}", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def prepared(make_params, tmp_path):
    """prepared(source, **data) -> the prepare stage's output folder for that source."""
    from stages.prepare import stage as prepare

    def build(source: str, **data) -> Path:
        out = tmp_path / f"prepared-{source}"
        if not out.exists():
            cfg = make_params({"data": {"source": source, **data}})
            prepare.run(cfg, out, root=tmp_path)
        return out

    return build


def write_params(repo: Path, overrides: dict[str, Any]) -> None:
    path = repo / "params.yaml"
    raw = deep_update(yaml.safe_load(path.read_text()), overrides)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture
def postgres_url() -> str:
    """$REPROLAB_POSTGRES_URL (start one with `scripts/pg_local.sh start`).

    Unset: the test skips with the reason, or fails when REPROLAB_REQUIRE_POSTGRES=1 (CI).
    """
    url = os.environ.get("REPROLAB_POSTGRES_URL")
    if url:
        return url
    reason = (
        "needs PostgreSQL: set REPROLAB_POSTGRES_URL "
        '(eval "$(scripts/pg_local.sh env)" starts a throwaway one on 127.0.0.1)'
    )
    if os.environ.get("REPROLAB_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"REPROLAB_REQUIRE_POSTGRES=1 but REPROLAB_POSTGRES_URL is unset; {reason}")
    pytest.skip(reason)


TINY_TRAIN = {
    "model": {"width": 8, "depth": 1},
    "train": {"max_epochs": 1, "threads": 1, "batch_size": 128, "progress_bar": "off"},
}


@pytest.fixture
def train_cli(shipped_params, tmp_path):
    """Run `python -m stages.train` on prepared digits in tmp_path with param overrides."""
    prepared = tmp_path / "prepared"
    cfg_raw = deep_update(shipped_params, {"data": {"source": "digits"}})
    from stages.prepare import stage as prepare

    prepare.run(config.validate(cfg_raw, tmp_path / "params.yaml"), prepared, root=tmp_path)

    def command(name: str, overrides: dict) -> tuple[list[str], Path]:
        out = tmp_path / name
        out.mkdir(exist_ok=True)
        raw = deep_update(shipped_params, deep_update(TINY_TRAIN, overrides))
        raw["train"]["use_augmented"] = False
        (out / "params.yaml").write_text(yaml.safe_dump(raw))
        args = {
            "params": out / "params.yaml",
            "prepared": prepared,
            "augmented": prepared,
            "tuned": out / "none.yaml",
            "checkpoints": out / "checkpoints",
            "ckpt": out / "model.ckpt",
            "model": out / "model.pt",
            "metrics": out / "train.json",
            "history": out / "history.csv",
        }
        cmd = [sys.executable, "-m", "stages.train"]
        for key, value in args.items():
            cmd += [f"--{key}", str(value)]
        return cmd, out

    return command


def train_env(tmp_path: Path) -> dict[str, str]:
    """Run from tmp_path (MLflow's artifact root lands there), importing the repo's code."""
    return pipeline_env(tmp_path) | {"PYTHONPATH": str(REPO)}


@pytest.fixture
def reliability(request):
    """Record a docs/reliability.md row for this test (see tests/reliability.py)."""
    import reliability as rows

    return rows.Recorder(request.node.nodeid)


def pytest_sessionfinish(session, exitstatus):
    import reliability as rows

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its rows go to the controller
        workeroutput["reliability_rows"] = rows.dump()
        return
    out = Path(os.environ.get("REPROLAB_RELIABILITY_DIR", REPO / "tests" / "out"))
    path = rows.write(out)
    if path is not None:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"reliability rows: {len(rows.ROWS)} -> {path}"
        )


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist: collect a finished worker's reliability rows in the controller."""
    import reliability as rows

    rows.extend(getattr(node, "workeroutput", {}).get("reliability_rows", "[]"))


def pytest_configure(config):
    """Children of the suite get SIGINT's default action, whatever started pytest.

    Several tests send SIGINT to stage processes (Ctrl-C). A shell without job control
    starts background jobs with SIGINT ignored, and an ignored signal stays ignored across
    exec, so under `cmd &` in a script those children never saw it. A handled signal is
    reset to the default in an exec'd child: handling it here restores what a terminal
    gives.
    """
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# The files that each take minutes (whole dvc pipelines, fault injection), longest first.
# pytest-xdist's `--dist loadfile` hands files to workers in collection order: these go
# first, so the short files fill the gaps instead of one worker finishing minutes early.
LONG_FILES = (
    "tests/test_serve.py",
    "tests/test_regression_pipeline.py",
    "tests/faults/test_dvc_faults.py",
    "tests/test_tune_stage.py",
    "tests/test_evaluate_pipeline.py",
    "tests/test_compress_stage.py",
    "tests/test_train_pipeline.py",
)


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        return LONG_FILES.index(path) if path in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)  # stable: each file's own order is kept
