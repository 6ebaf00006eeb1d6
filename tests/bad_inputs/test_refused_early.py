"""Bad settings cost nothing: refused before any work, earlier outputs kept, no failing loop.

Everything goes through the real CLI (`dvc repro`, `dvc exp run -S`, `python -m
stages.config`, `python -m stages.tune`) on a copy of the repo.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import mlflow
import optuna
import pytest
import torch
import yaml

from tests.conftest import REPO, pipeline_env, run_dvc, run_stage, write_params

pytestmark = pytest.mark.integration

TINY = {
    "data": {
        "source": "synthetic",
        "synthetic": {"n_samples": 240, "n_features": 6, "n_informative": 4, "n_classes": 3},
    },
    "augment": {"enabled": False},
    "model": {"arch": "mlp", "width": 8, "depth": 1},
    "train": {"max_epochs": 1, "batch_size": 64, "threads": 1, "progress_bar": "off"},
    "tune": {
        "n_trials": 2,
        "max_epochs": 1,
        "n_startup_trials": 1,
        "pruner": "none",
        "search_space": {
            "train.optimizer.lr": {"type": "float", "low": 0.001, "high": 0.01, "log": True},
        },
    },
    "mlflow": {"experiment": "refused"},
}
KEPT = (
    "models/model.pt",
    "models/model.ckpt",
    "metrics/train.json",
    "metrics/tune.json",
    "tuning/best_params.yaml",
    "data/prepared/train/X.npy",
    "data/prepared/schema.json",
)


def _write(repo: Path, overrides: dict) -> None:
    """Deep-merge `overrides`, but take the search space as given (not merged)."""
    write_params(repo, overrides)
    path = repo / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    if "tune" in overrides and "search_space" in overrides["tune"]:
        raw["tune"]["search_space"] = overrides["tune"]["search_space"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _digests(repo: Path) -> dict[str, str]:
    return {p: hashlib.sha256((repo / p).read_bytes()).hexdigest()[:12] for p in KEPT}


def _run_states(env: dict) -> dict[str, int]:
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments]) if experiments else []
    states: dict[str, int] = {}
    for run in runs:
        states[run.info.status] = states.get(run.info.status, 0) + 1
    return states


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A repo copy after a full `dvc repro train` (validate, prepare, augment, tune, train)."""
    from tests.conftest import copy_repo

    tmp = tmp_path_factory.mktemp("refused")
    repo = copy_repo(tmp / "repo")
    env = pipeline_env(tmp)
    _write(repo, TINY)
    run_dvc(repo, env, "repro", "train")
    subprocess_git(repo, "add", "-A")
    subprocess_git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ran")
    return repo, env


def subprocess_git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


CASES = [
    ("train.batch_size: 0", {"train": {"batch_size": 0}}, "train.batch_size"),
    ("train.precision: 16-mixed (GPU only) on a CPU", {"train": {"precision": "16-mixed"}},
     "train.precision"),
    ("model.arch: resnt (a typo)", {"model": {"arch": "resnt"}}, "model.arch"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "overrides", "key"), CASES, ids=["batch0", "fp16cpu", "typo"])
def test_a_refused_setting_keeps_every_earlier_output(trained, what, overrides, key, reliability):
    if key == "train.precision" and torch.cuda.is_available():
        pytest.skip("16-mixed runs on this machine's GPU")
    repo, env = trained
    before, runs_before = _digests(repo), _run_states(env)
    params = (repo / "params.yaml").read_text()
    _write(repo, overrides)
    try:
        res = run_dvc(repo, env, "repro", "train", check=False)
    finally:
        (repo / "params.yaml").write_text(params)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "error: validate:" in res.stderr and key in res.stderr, res.stderr[-3000:]
    assert _digests(repo) == before
    assert _run_states(env) == runs_before  # no new run, none RUNNING
    reliability.record(
        "bad input",
        f"`{what}`, then `dvc repro train` over an earlier complete run",
        "refused by the validate stage naming the key; every earlier output byte-identical "
        "(model.pt, model.ckpt, train.json, uncached tune.json); no MLflow run",
        before={"outputs (sha256)": len(before)},
        after={
            "exit": res.returncode,
            "outputs unchanged": f"{sum(_digests(repo)[p] == before[p] for p in KEPT)}/{len(KEPT)}",
            "new runs": sum(_run_states(env).values()) - sum(runs_before.values()),
        },
    )


def test_dvc_exp_run_with_an_unparsable_value_keeps_the_outputs(trained, reliability):
    repo, env = trained
    before = _digests(repo)
    res = run_dvc(repo, env, "exp", "run", "-S", "train.optimizer.lr=abc", check=False)
    said = res.stdout + res.stderr
    assert res.returncode != 0
    assert "Traceback" not in said and "train.optimizer.lr" in said, said[-3000:]
    subprocess_git(repo, "checkout", "--", "params.yaml")
    assert _digests(repo) == before
    reliability.record(
        "bad input",
        "`dvc exp run -S train.optimizer.lr=abc` over an earlier complete run",
        "refused by the validate stage naming train.optimizer.lr; earlier outputs unchanged",
        before={"outputs (sha256)": len(before)},
        after={"exit": res.returncode, "outputs unchanged": _digests(repo) == before},
    )


def _config_cli(tmp: Path, params: dict) -> tuple[int, str]:
    """`python -m stages.config p.yaml` in a project folder with digits prepared."""
    (tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    res = run_stage("config", tmp, dict(os.environ, PYTHONPATH=str(REPO)), "params.yaml")
    return res.returncode, res.stderr


@pytest.fixture(scope="module")
def digits_project(tmp_path_factory):
    """A folder with dvc.yaml and prepare's output for digits, as after `dvc repro prepare`."""
    from stages import config
    from stages.prepare import stage as prepare

    tmp = tmp_path_factory.mktemp("config-cli")
    shutil.copy(REPO / "dvc.yaml", tmp)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    prepare.run(config.validate(raw, tmp / "params.yaml"), tmp / "data/prepared", root=tmp)
    return tmp, raw


CONFIG_CASES = [
    ("transformer, patch_size 3 on 8x8 digits",
     {"model": {"arch": "transformer", "transformer": {"patch_size": 3}}},
     "model.transformer.patch_size = 3: must divide the image size 8x8"),
    ("16-mixed without a GPU", {"train": {"precision": "16-mixed"}},
     "train.precision = '16-mixed': needs a GPU"),
    ("an unknown search-space key", {"tune": {"search_space": {
        "train.optimizer.learning_rate": {"type": "float", "low": 0.001, "high": 0.1}}}},
     "tune.search_space.train.optimizer.learning_rate"),
    ("a searched patch size the image cannot take", {"model": {"arch": "transformer"}, "tune": {
        "search_space": {"model.transformer.patch_size": {"type": "categorical",
                                                          "choices": [2, 3]}}}},
     "tune.search_space.model.transformer.patch_size: value 3 can be drawn"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "overrides", "said"), CONFIG_CASES, ids=range(4))
def test_config_cli_refuses_what_a_stage_would(digits_project, what, overrides, said, reliability):
    from tests.conftest import deep_update

    if "GPU" in what and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    tmp, raw = digits_project
    params = deep_update(raw, overrides)
    if "search_space" in overrides.get("tune", {}):
        params["tune"]["search_space"] = overrides["tune"]["search_space"]
    code, err = _config_cli(tmp, params)
    assert code == 2 and said in err and "Traceback" not in err, err
    reliability.record(
        "bad input",
        f"`python -m stages.config` with {what}",
        f"exit 2: `{said}`",
        before={},
        after={"exit": code},
    )


def test_config_cli_warns_about_more_cpu_ranks_than_cores(digits_project):
    tmp, raw = digits_project
    many = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1) + 1
    params = {**raw, "train": {**raw["train"], "accelerator": "cpu", "devices": many}}
    code, err = _config_cli(tmp, params)
    assert code == 0, err
    assert f"warning: train.devices = {many}: {many} CPU ranks on" in err
    assert "data combinations checked against" in err


def _study(repo: Path) -> optuna.Study | None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = repo / "tuning/study/journal.log"
    if not journal.exists():
        return None
    storage = JournalStorage(JournalFileBackend(str(journal)))
    summaries = optuna.get_all_study_summaries(storage)
    if not summaries:
        return None
    return optuna.load_study(study_name=summaries[0].study_name, storage=storage)


def test_tune_refuses_a_fixed_setting_every_trial_would_inherit(trained, reliability):
    if torch.cuda.is_available():
        pytest.skip("16-mixed runs on this machine's GPU")
    repo, env = trained
    trials = len(_study(repo).trials)
    params = (repo / "params.yaml").read_text()
    _write(repo, {"train": {"precision": "16-mixed"}})
    try:
        res = run_stage("tune", repo, env, timeout=300)
    finally:
        (repo / "params.yaml").write_text(params)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "train.precision = '16-mixed': needs a GPU" in res.stderr
    assert len(_study(repo).trials) == trials  # not one trial more
    assert "RUNNING" not in _run_states(env)
    reliability.record(
        "bad input",
        "`train.precision: 16-mixed` on a CPU, fixed for every trial, `python -m stages.tune`",
        "exit 2 before the first trial, naming train.precision; no trial, no RUNNING run",
        before={"trials": trials},
        after={"exit": res.returncode, "trials": len(_study(repo).trials)},
    )


def test_trials_failing_alike_stop_the_study_which_then_resumes(trained, reliability):
    repo, env = trained
    env = {**env, "REPROLAB_FAULT_NAN": "*:0"}  # NaN inputs at every trial's first step
    limit, target = 3, 5
    before = len(_study(repo).trials)
    write_params(repo, {"tune": {"n_trials": target, "max_consecutive_failures": limit}})
    started = time.monotonic()
    res = run_stage("tune", repo, env, timeout=600)
    took = time.monotonic() - started
    assert res.returncode == 2, res.stderr[-3000:]
    assert f"{limit} trials in a row failed with: TrialFault:" in res.stderr
    assert f"tune.max_consecutive_failures = {limit}" in res.stderr
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    new = _study(repo).trials[before:]
    assert [t.state for t in new] == [optuna.trial.TrialState.FAIL] * limit
    runs = _run_states(env)
    assert "RUNNING" not in runs
    env.pop("REPROLAB_FAULT_NAN")  # the cause fixed: the same study resumes and finishes
    again = run_stage("tune", repo, env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    complete = [t for t in _study(repo).trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == target
    reliability.record(
        "bad input",
        "every trial's loss NaN (`REPROLAB_FAULT_NAN=*:0`), `python -m stages.tune`",
        f"stops after {limit} alike failures (tune.max_consecutive_failures), exit 2, the "
        "reason in one line, no traceback, no RUNNING run; fixed, the same study resumes",
        before={"trials": before},
        after={
            "exit": res.returncode,
            "FAIL": limit,
            "seconds to stop": round(took, 1),
            "MLflow runs": runs,
            "COMPLETE after resume": len(complete),
        },
    )
