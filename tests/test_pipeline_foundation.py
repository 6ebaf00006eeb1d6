"""Real `dvc repro prepare augment` in a copy of the repo, with MLflow in tmp_path."""

from __future__ import annotations

import json

import mlflow
import pytest

from tests.conftest import pipeline_env, run_dvc, run_stage, write_params

pytestmark = pytest.mark.integration

TINY = {"augment": {"multiplier": 2, "sample_grid": 4}}


def _runs(env):
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("reprolab-digits")
    return client.search_runs([exp.experiment_id]) if exp else []


def test_repro_prepare_augment(repo_copy, tmp_path):
    env = pipeline_env(tmp_path)
    write_params(repo_copy, TINY)
    out = run_dvc(repo_copy, env, "repro", "prepare", "augment")
    assert "Running stage 'prepare'" in out.stdout and "Running stage 'augment'" in out.stdout
    schema = json.loads((repo_copy / "data/prepared/schema.json").read_text())
    assert schema["dataset"] == "digits" and schema["input_shape"] == [1, 8, 8]
    assert (repo_copy / "data/augmented/train/split.json").exists()
    assert (repo_copy / "data/augmented/samples.png").exists()

    runs = _runs(env)
    assert sorted(r.data.tags["stage"] for r in runs) == ["augment", "prepare"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["pipeline_id"] for r in runs}) == 1  # one dvc repro, one id
    assert {r.data.tags["data_fingerprint"] for r in runs} == {schema["fingerprint"]}
    aug = next(r for r in runs if r.data.tags["stage"] == "augment")
    assert aug.data.tags["dvc_dep.data/prepared"].endswith(".dir")
    assert "samples.png" in [
        a.path
        for a in mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).list_artifacts(aug.info.run_id)
    ]

    again = run_dvc(repo_copy, env, "repro", "prepare", "augment")
    assert "Running stage" not in again.stdout and len(_runs(env)) == 2

    write_params(repo_copy, {"augment": {"image": {"rotation": {"degrees": 20}}}})
    third = run_dvc(repo_copy, env, "repro", "prepare", "augment")
    assert "Running stage 'augment'" in third.stdout
    assert "Running stage 'prepare'" not in third.stdout
    runs = _runs(env)
    assert len(runs) == 3 and len({r.data.tags["pipeline_id"] for r in runs}) == 2


def test_bad_params_fail_before_any_run(repo_copy, tmp_path):
    env = pipeline_env(tmp_path)
    (repo_copy / "params.yaml").write_text(
        "data:\n  source: digits\n  val_size: 0.6\n  test_size: 0.5\n"
    )
    res = run_stage("prepare", repo_copy, env, timeout=120)
    assert res.returncode == 2
    assert (
        "params.yaml" in res.stderr
        and "data.val_size + data.test_size = 0.6 + 0.5 = 1.1" in res.stderr
    )
    assert "Traceback" not in res.stderr
    assert not (repo_copy / "data/prepared").exists() and not _runs(env)


def test_bad_data_fails_without_outputs_or_runs(repo_copy, tmp_path):
    env = pipeline_env(tmp_path)
    (repo_copy / "data/raw/empty.csv").write_text("a,b,label\n")
    write_params(repo_copy, {"data": {"source": "data/raw/empty.csv", "target": "label"}})
    res = run_stage("prepare", repo_copy, env, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "empty.csv" in res.stderr and "no data rows" in res.stderr
    assert not (repo_copy / "data/prepared").exists()
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.parametrize(
    ("sets", "expect"),
    [
        (
            ["data.source=data/raw/examples/houses.csv", "data.target=price", "model.arch=mlp"],
            {"task": "regression", "modality": "table"},
        ),
        (
            ["data.source=data/raw/examples/shapes", "data.target=null", "data.image_size=[16,16]"],
            {"task": "classification", "modality": "image", "input_shape": [3, 16, 16]},
        ),
    ],
    ids=["houses-csv", "shapes-png"],
)
def test_readme_own_data_commands(repo_copy, tmp_path, sets, expect):
    env = pipeline_env(tmp_path)
    args = [a for s in sets for a in ("-S", s)]
    run_dvc(repo_copy, env, "exp", "run", *args, "augment")
    schema = json.loads((repo_copy / "data/prepared/schema.json").read_text())
    assert {k: schema[k] for k in expect} == expect
    assert (repo_copy / "data/augmented/train/split.json").exists()
