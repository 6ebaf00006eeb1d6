"""The tune stage for real: `dvc repro tune`, nested MLflow runs, resume after kill -9,
NaN injected into a trial, and the tuned params feeding the train stage."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml

from tests.conftest import copy_repo, pipeline_env, run_dvc, run_stage, write_params

pytestmark = pytest.mark.integration

TINY = {
    "data": {
        "source": "synthetic",
        "synthetic": {"n_samples": 300, "n_features": 8, "n_informative": 5, "n_classes": 3},
    },
    "augment": {"enabled": False},
    "model": {"arch": "mlp", "width": 8, "depth": 1},
    "train": {"max_epochs": 2, "batch_size": 64, "scheduler": {"name": "cosine"}},
    "tune": {
        "n_trials": 4,
        "max_epochs": 2,
        "n_startup_trials": 2,
        "pruner": "median",
        "search_space": {
            "train.optimizer.lr": {"type": "float", "low": 0.001, "high": 0.05, "log": True},
            "model.width": {"type": "categorical", "choices": [8, 12]},
        },
    },
    "mlflow": {"experiment": "tune-test"},
}


@pytest.fixture(scope="module")
def _upstream_once(tmp_path_factory) -> Path:
    """A repo copy with TINY's validate, prepare and augment run once for this file.

    No test here changes a param prepare or augment reads, so the tests below start from a
    copy of it instead of paying those stages again (three stage processes, ~15 s each test).
    The tests that assert the upstream stages' own MLflow runs build their own.
    """
    base = tmp_path_factory.mktemp("tune-upstream")
    repo = copy_repo(base / "repo")
    _write(repo, TINY)
    run_dvc(repo, pipeline_env(base), "repro", "augment")
    return repo


@pytest.fixture
def upstream_copy(_upstream_once, tmp_path) -> Path:
    """This test's own copy of `_upstream_once` (git, dvc.lock, cache and outputs)."""
    return Path(shutil.copytree(_upstream_once, tmp_path / "repo", symlinks=True))


def _write(repo, overrides):
    """Deep-merge `overrides`, but take the search space as given (not merged)."""
    write_params(repo, overrides)
    path = repo / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["tune"]["search_space"] = overrides["tune"]["search_space"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _study(repo):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(repo / "tuning/study/journal.log")))
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def _states(study):
    out = {}
    for t in study.get_trials():
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def _console_messages(stderr: str) -> list[str]:
    """The stages' log lines without their `HH:MM:SS <stage> LEVEL ` prefix."""
    return [re.sub(r"^\d\d:\d\d:\d\d \w+ [A-Z]+ ", "", line) for line in stderr.splitlines()]


def test_repro_tune_nested_runs_and_best_params_feed_train(repo_copy, tmp_path):
    env = pipeline_env(tmp_path)
    _write(repo_copy, TINY)
    console = run_dvc(repo_copy, env, "repro", "tune").stderr
    messages = _console_messages(console)  # each line once: not per handler, not per trial
    assert [m for m, n in Counter(messages).items() if n > 1] == [], console
    assert "litlogger" not in console and not any(m.startswith("INFO: ") for m in messages)
    assert messages.count("GPU available: False, used: False") == 1, console
    assert "experimental" not in console and "deprecated" not in console, console
    metrics = json.loads((repo_copy / "metrics/tune.json").read_text())
    assert metrics["finished"] == 4 and metrics["metric"] == "val/acc"
    best = yaml.safe_load((repo_copy / "tuning/best_params.yaml").read_text())
    assert set(best) <= {"train.optimizer.lr", "model.width"} and best
    assert (repo_copy / "tuning/plots/history.png").exists()
    for t in _study(repo_copy).get_trials():  # steps = epochs trained, Hyperband's resource
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert sorted(t.intermediate_values) == [1, 2]  # tune.max_epochs = 2

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("tune-test")
    (parent,) = client.search_runs([exp.experiment_id], "tags.stage = 'tune'")
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == f"tune · {parent.data.tags['pipeline_id'][:6]}"
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    contexts = {
        i.dataset.name: {t.key: t.value for t in i.tags}["mlflow.data.context"]
        for i in parent.inputs.dataset_inputs
    }  # trials fit on train alone
    assert contexts == {"synthetic/augmented/train": "train", "synthetic/prepared/val": "val"}
    assert parent.data.metrics["trials_complete"] + parent.data.metrics.get("trials_pruned", 0) == 4
    children = client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 4
    for child in children:
        assert child.data.tags["trial_state"] in ("complete", "pruned")
        assert "train.optimizer.lr" in child.data.params
        assert client.get_metric_history(child.info.run_id, "val/acc")

    run_dvc(repo_copy, env, "repro", "train")
    (train_run,) = client.search_runs([exp.experiment_id], "tags.stage = 'train'")
    assert train_run.data.tags["train.tuned"] == "true"
    assert float(train_run.data.params["model.width"]) == best.get("model.width", 8)

    again = run_dvc(repo_copy, env, "repro", "tune")
    assert "Running stage 'tune'" not in again.stdout


def _tune_until_mid_trial(repo, env, complete: int, stderr=subprocess.DEVNULL):
    """Start `python -m stages.tune` (a hang failpoint in env) and return it once `complete`
    trials are COMPLETE and one is RUNNING; fails if the stage ended first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.tune"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )
    journal = repo / "tuning/study/journal.log"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if journal.exists():
            states = _states(_study(repo))
            if states.get("COMPLETE", 0) >= complete and states.get("RUNNING", 0):
                break
    assert proc.poll() is None, "the tune stage ended before it could be stopped mid-trial"
    return proc


def test_kill_9_mid_trial_then_resume_keeps_every_complete_trial(
    upstream_copy, tmp_path, reliability
):
    env = {**pipeline_env(tmp_path), "REPROLAB_FAULT_HANG": "2:1"}  # trial 2 blocks mid-run
    _write(upstream_copy, {**TINY, "tune": {**TINY["tune"], "n_trials": 5, "pruner": "none"}})
    run_dvc(upstream_copy, env, "repro", "augment")
    proc = _tune_until_mid_trial(upstream_copy, env, complete=2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    env.pop("REPROLAB_FAULT_HANG")
    before = {
        t.number: t.params
        for t in _study(upstream_copy).get_trials()
        if t.state == optuna.trial.TrialState.COMPLETE
    }
    assert len(before) >= 2

    run_dvc(upstream_copy, env, "repro", "tune")
    study = _study(upstream_copy)
    states = _states(study)
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == 5
    assert states.get("FAIL", 0) == 1 and "RUNNING" not in states
    after = {
        t.number: t.params
        for t in study.get_trials()
        if t.state == optuna.trial.TrialState.COMPLETE
    }
    assert all(after[n] == p for n, p in before.items())  # none lost, none re-run
    (failed,) = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.FAIL]
    retry = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == failed.number]
    assert len(retry) == 1 and retry[0].params == failed.params
    reliability.record(
        "fault",
        "`kill -9` of `stages.tune` with trial 2 surely mid-run (failpoint "
        "`REPROLAB_FAULT_HANG`), then `dvc repro tune`",
        "every COMPLETE trial kept unchanged; the orphaned trial failed and retried once "
        "with the same params; study reaches n_trials",
        before={"COMPLETE": len(before), "RUNNING": 1},
        after={k: v for k, v in sorted(states.items())} | {"retries": len(retry)},
    )


def test_nan_injected_in_a_trial_fails_it_and_the_study_goes_on(
    upstream_copy, tmp_path, reliability
):
    env = {**pipeline_env(tmp_path), "REPROLAB_FAULT_NAN": "1:2"}
    _write(upstream_copy, {**TINY, "tune": {**TINY["tune"], "n_trials": 3}})
    run_dvc(upstream_copy, env, "repro", "tune")
    study = _study(upstream_copy)
    nan_trial = study.trials[1]
    assert nan_trial.state == optuna.trial.TrialState.FAIL
    assert (
        "non-finite" in nan_trial.user_attrs["fail_reason"].lower()
        or "nan" in nan_trial.user_attrs["fail_reason"].lower()
    )
    metrics = json.loads((upstream_copy / "metrics/tune.json").read_text())
    assert metrics["finished"] == 3 and metrics["trials"]["fail"] == 1
    assert metrics["best_value"] == metrics["best_value"]  # not NaN
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("tune-test")
    failed = client.search_runs([exp.experiment_id], "tags.trial_state = 'fail'")
    assert len(failed) == 1 and failed[0].info.status == "FAILED"
    reliability.record(
        "fault",
        "NaN loss injected at step 2 of trial 1 (`REPROLAB_FAULT_NAN=1:2`)",
        "that trial FAILED with its reason stored; the study goes on; best value is a number",
        before={"trials": 0},
        after={
            "finished": metrics["finished"],
            "FAIL": metrics["trials"]["fail"],
            "best value": metrics["best_value"],
            "MLflow trial runs FAILED": len(failed),
        },
    )


def test_pruning_with_two_ddp_ranks_ends_without_a_hang(upstream_copy, tmp_path):
    """devices: 2 on CPU (gloo): rank 0 decides, the decision is broadcast, both stop."""
    env = pipeline_env(tmp_path)
    ddp = {
        **TINY,
        "train": {**TINY["train"], "devices": 2, "accelerator": "cpu"},
        "tune": {
            **TINY["tune"],
            "n_trials": 6,
            "max_epochs": 4,
            "n_startup_trials": 1,
            "pruner": "successive_halving",
            "sampler": "random",
            "search_space": {
                "train.optimizer.lr": {"type": "categorical", "choices": [0.05, 0.00001]}
            },
        },
    }
    _write(upstream_copy, ddp)
    run_dvc(upstream_copy, env, "repro", "augment")
    started = time.time()
    res = run_stage("tune", upstream_copy, env, timeout=420)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Starting with 2 processes" in res.stderr + res.stdout
    states = _states(_study(upstream_copy))
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == 6, states
    assert states.get("PRUNED", 0) >= 1, states  # the broadcast-stop path really ran
    pruned = [
        t for t in _study(upstream_copy).get_trials() if t.state == optuna.trial.TrialState.PRUNED
    ]
    assert all(t.user_attrs["pruned_at_epoch"] < 3 for t in pruned)  # stopped before the end
    assert time.time() - started < 400


def test_real_tracking_server_receives_nested_trials(repo_copy, tmp_path):
    """Every run of `dvc repro tune` reaches a real `mlflow server` over REST, including the
    nested trial runs that two worker processes log."""
    from tests.test_tracking_server import mlflow_server

    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts") as uri:
        env = {**pipeline_env(tmp_path), "MLFLOW_TRACKING_URI": uri}
        _write(repo_copy, {**TINY, "tune": {**TINY["tune"], "n_workers": 2}})
        res = run_dvc(repo_copy, env, "repro", "tune", check=False, timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name("tune-test")
        runs = client.search_runs([exp.experiment_id])
        stages = sorted(r.data.tags["stage"] for r in runs if r.data.tags["stage"] != "tune-trial")
        assert stages == ["augment", "prepare", "tune"]
        (parent,) = [r for r in runs if r.data.tags["stage"] == "tune"]
        trials = [r for r in runs if r.data.tags["stage"] == "tune-trial"]
        assert len(trials) >= 4
        assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
        assert all(r.info.status in ("FINISHED", "FAILED") for r in runs)
        assert "plots" in [a.path for a in client.list_artifacts(parent.info.run_id)]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_trial_ends_runs_killed_and_resume_keeps_the_study(
    upstream_copy, tmp_path, sig, code, reliability
):
    """Fault: SIGTERM/SIGINT to the tune stage while trial 1 is surely mid-run. Expected:
    exit 143/130, the stage run and the interrupted trial run KILLED (none RUNNING), the
    complete trial kept; `dvc repro tune` then finishes the study without re-running it."""
    env = {**pipeline_env(tmp_path), "REPROLAB_FAULT_HANG": "1:1"}
    _write(upstream_copy, {**TINY, "tune": {**TINY["tune"], "n_trials": 3, "pruner": "none"}})
    run_dvc(upstream_copy, env, "repro", "augment")
    proc = _tune_until_mid_trial(upstream_copy, env, complete=1, stderr=subprocess.PIPE)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-5000:]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("tune-test")
    runs = client.search_runs([exp.experiment_id])
    statuses = sorted(r.info.status for r in runs if r.data.tags.get("stage") != "augment")
    assert "RUNNING" not in statuses and "KILLED" in statuses, statuses
    before = {
        t.number: t.params
        for t in _study(upstream_copy).get_trials()
        if t.state == optuna.trial.TrialState.COMPLETE
    }
    assert len(before) >= 1

    env.pop("REPROLAB_FAULT_HANG")
    run_dvc(upstream_copy, env, "repro", "tune")
    study = _study(upstream_copy)
    states = _states(study)
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == 3 and "RUNNING" not in states
    after = {t.number: t.params for t in study.get_trials() if t.state.name == "COMPLETE"}
    assert all(after[n] == p for n, p in before.items())
    reliability.record(
        "fault",
        f"{signal.Signals(sig).name} to `stages.tune` with trial 1 surely mid-run, then "
        "`dvc repro tune`",
        f"exit {code}, no traceback; stage run and interrupted trial run KILLED, none "
        "RUNNING; complete trials kept, the study finishes without re-running them",
        before={"COMPLETE": len(before), "MLflow runs": dict(Counter(statuses))},
        after={k: v for k, v in sorted(states.items())},
    )
