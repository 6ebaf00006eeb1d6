"""Tuning workers on a real PostgreSQL study (RDB storage with heartbeats).

Needs $REPROLAB_POSTGRES_URL (`eval "$(scripts/pg_local.sh env)"`); CI sets it and
REPROLAB_REQUIRE_POSTGRES=1, so there these tests cannot be skipped.
"""

from __future__ import annotations

import subprocess
import sys
import time

import mlflow
import optuna
import pytest

from tests.conftest import pipeline_env, run_dvc, run_stage, start_stage
from tests.test_tracking_server import fresh_database
from tests.test_tune_stage import TINY, _write

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def optuna_db(postgres_url):
    with fresh_database(postgres_url) as url:
        yield url


def _study(url):
    storage = optuna.storages.RDBStorage(url)
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def _params(n_trials, n_workers, url, **tune):
    return {
        **TINY,
        "tune": {
            **TINY["tune"],
            "n_trials": n_trials,
            "n_workers": n_workers,
            "pruner": "none",
            "storage": url,
            "heartbeat_interval": 1,
            "grace_period": 3,
            **tune,
        },
    }


def test_three_workers_share_one_study(repo_copy, tmp_path, optuna_db, reliability):
    env = pipeline_env(tmp_path)
    n = 3  # trials long enough (20 epochs) that the two worker processes start and join
    _write(repo_copy, _params(3 * n, 3, optuna_db, max_epochs=20))
    run_dvc(repo_copy, env, "repro", "augment")
    res = run_stage("tune", repo_copy, env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "database is locked" not in res.stderr
    assert optuna_db.split("@")[0].split(":")[-1] not in res.stderr  # password never logged
    study = _study(optuna_db)
    trials = study.get_trials()
    finished = [
        t for t in trials if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL
    ]
    assert len(finished) == 3 * n
    assert len({t.number for t in trials}) == len(trials)  # no duplicate numbers
    assert len({t.user_attrs["reprolab_pid"] for t in finished}) >= 2  # really shared
    for t in finished:
        assert 0.001 <= t.params["train.optimizer.lr"] <= 0.05
        assert t.params["model.width"] in (8, 12)
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("tune-test")
    runs = client.search_runs([exp.experiment_id], "tags.stage = 'tune-trial'")
    assert {r.data.tags["optuna_trial"] for r in runs} >= {str(t.number) for t in finished}
    reliability.record(
        "load",
        "3 tune workers (the stage + 2 `tune-worker` processes) on one PostgreSQL study",
        "one study, exactly n_trials finished, no duplicate trial numbers, every trial in "
        "MLflow, password never logged",
        before={"trials": 0},
        after={
            "finished": len(finished),
            "worker pids": len({t.user_attrs["reprolab_pid"] for t in finished}),
            "MLflow trial runs": len(runs),
        },
    )


def test_kill_9_worker_trial_fails_after_grace_and_is_retried(
    repo_copy, tmp_path, optuna_db, reliability
):
    """An external worker (another machine, in real life) dies mid-trial: after the grace
    period its trial is FAIL, the retry runs with the same params, the target is reached."""
    env = pipeline_env(tmp_path)
    _write(repo_copy, _params(4, 1, optuna_db, max_epochs=25))
    run_dvc(repo_copy, env, "repro", "augment")
    stage = start_stage("tune", repo_copy, env)
    worker = subprocess.Popen(
        [sys.executable, "-m", "stages.tune", "--worker"],
        cwd=repo_copy,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    victim, deadline = None, time.time() + 300
    while victim is None and time.time() < deadline and worker.poll() is None:
        time.sleep(1)
        try:
            study = _study(optuna_db)
        except ValueError:  # study not created yet
            continue
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        # mid-trial: its first epoch is reported, so every param of the trial is drawn
        # (a trial killed between two suggestions is retried with the drawn ones fixed and
        # the rest sampled afresh, as RetryFailedTrialCallback does)
        victim = next(
            (
                t.number
                for t in running
                if t.user_attrs.get("reprolab_pid") == worker.pid and t.intermediate_values
            ),
            None,
        )
    assert victim is not None, "the external worker never ran a trial"
    worker.kill()
    worker.wait(timeout=30)
    _, err = stage.communicate(timeout=600)
    assert stage.returncode == 0, err[-3000:]
    study = _study(optuna_db)
    killed = study.trials[victim]
    assert killed.state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert retries[0].params == killed.params
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert complete == 4
    reliability.record(
        "fault",
        "`kill -9` of one of two tune workers mid-trial (PostgreSQL storage)",
        "its trial is failed by the heartbeat after the grace period and retried once with "
        "the same params; the study reaches n_trials",
        before={"RUNNING": 1},
        after={"FAIL": 1, "retries": len(retries), "COMPLETE": complete},
    )


def test_db_blip_mid_study_does_not_stop_the_workers(repo_copy, tmp_path, optuna_db, reliability):
    """Every connection to the study's database is killed server-side mid-run (a real
    PostgreSQL restart or network blip looks like this to clients): the stage reconnects
    and still finishes its trials."""
    import psycopg2
    from sqlalchemy.engine import make_url

    env = pipeline_env(tmp_path)
    _write(repo_copy, _params(4, 1, optuna_db, max_epochs=15))
    run_dvc(repo_copy, env, "repro", "augment")
    stage = start_stage("tune", repo_copy, env)
    db = make_url(optuna_db).database
    killed, deadline = 0, time.time() + 300
    while not killed and time.time() < deadline and stage.poll() is None:
        time.sleep(1)
        try:
            if _study(optuna_db).get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
                with psycopg2.connect(optuna_db) as conn, conn.cursor() as cur:
                    cur.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        (db,),
                    )
                    killed = sum(1 for (ok,) in cur.fetchall() if ok)
        except ValueError:  # study not created yet
            continue
    assert killed, "no connection of the stage was seen to kill"
    _, err = stage.communicate(timeout=600)
    assert stage.returncode == 0, err[-3000:]
    states = [t.state for t in _study(optuna_db).trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4
    reliability.record(
        "fault",
        "PostgreSQL connections of a running study terminated (`pg_terminate_backend`)",
        "the workers reconnect and finish the study",
        before={"connections killed": killed},
        after={"COMPLETE": 4, "stage exit": stage.returncode},
    )
