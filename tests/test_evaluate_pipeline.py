"""`dvc repro baselines evaluate` in a repo copy: real dvc, real MLflow, tiny params."""

from __future__ import annotations

import json

import pytest

from stages.common import splits
from tests.conftest import pipeline_env, run_dvc, write_params

pytestmark = pytest.mark.integration

TINY = {
    "data": {"source": "iris"},
    "augment": {"multiplier": 1},
    "baselines": {
        "models": ["logreg_l2", "random_forest", "knn"],
        "hyperparams": {"random_forest": {"n_estimators": 10}},
    },
    "evaluate": {"bootstrap": 200, "latency_repeats": 2, "latency_budget_s": 0.05},
    "model": {"arch": "mlp", "width": 16, "depth": 1},
    "train": {
        "max_epochs": 2,
        "threads": 1,
        "scheduler": {"name": "cosine"},
    },
    "tune": {"enabled": False},
    "compress": {
        "unstructured": {"enabled": False},
        "structured": {"enabled": False},
        "distill": {"enabled": False},
        "quantize": {"static": False},
        "latency": {"repeats": 2, "budget_s": 0.05},
    },
}
# the compress stage's fp32 ONNX reference and its dynamic INT8 variant join the board
CANDIDATES = {"logreg_l2", "random_forest", "knn", "network", "onnx_fp32", "int8_dynamic"}


def _dvc(repo, env, *args):
    return run_dvc(repo, env, *args).stdout


def test_repro_metrics_plots_experiments_and_mlflow(repo_copy, tmp_path):
    env = pipeline_env(tmp_path)
    write_params(repo_copy, TINY)
    _dvc(repo_copy, env, "repro", "baselines", "evaluate")

    shown = json.loads(_dvc(repo_copy, env, "metrics", "show", "--json"))
    [workspace] = shown.values()
    files = workspace["data"]
    board = files["metrics/leaderboard.json"]["data"]
    assert set(board["candidates"]) == CANDIDATES  # the trained network sits with the baselines
    assert board["candidates"][board["best"]]["rank"] == 1
    assert set(files["metrics/baselines.json"]["data"]) == {"logreg_l2", "random_forest", "knn"}

    out = str(tmp_path / "dvc_plots")
    plots = json.loads(_dvc(repo_copy, env, "plots", "show", "--json", "--out", out))
    rendered = plots["data"]
    assert {"plots/evaluate/confusion.csv", "plots/evaluate/pareto.png"} <= set(rendered)
    [confusion] = rendered["plots/evaluate/confusion.csv"]
    assert confusion["type"] == "vega" and "predicted" in json.dumps(confusion["content"])
    errors = {e["source"] for e in plots.get("errors", [])}
    missing = {s for s in errors if s.startswith("plots/evaluate/")}  # iris does not make them
    assert missing <= {"plots/evaluate/roc.csv", "plots/evaluate/predictions.csv"} | {
        f"plots/evaluate/{n}.png" for n in ("roc", "pr", "pred_vs_actual", "residuals")
    }

    # an experiment that changes the model list re-runs baselines + evaluate only
    _dvc(
        repo_copy,
        env,
        "exp",
        "run",
        "-S",
        "baselines.models=[knn]",
        "--name",
        "knn-only",
        "evaluate",
    )
    table = _dvc(repo_copy, env, "exp", "show", "--csv", "--no-pager")
    assert "knn-only" in table and "candidates.knn.accuracy" in table
    exp = json.loads(_dvc(repo_copy, env, "metrics", "show", "--json"))  # workspace = knn-only
    [after] = exp.values()
    assert set(after["data"]["metrics/leaderboard.json"]["data"]["candidates"]) == {
        "knn",
        "network",
        "onnx_fp32",
        "int8_dynamic",
    }

    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])  # conftest restores it after the test
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], max_results=100
    )
    parents = [r for r in runs if r.data.tags.get("stage") == "baselines"]
    first_parent = parents[-1].info.run_id  # runs are newest first
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == first_parent]
    assert len(parents) == 2 and len(children) == 3  # first repro: three models, nested
    child = children[0]
    assert child.data.metrics["fit_seconds"] >= 0
    uri = f"models:/{child.outputs.model_outputs[0].model_id}"
    assert mlflow.models.get_model_info(uri).signature.inputs is not None

    X = splits.load(repo_copy / "data" / "prepared" / "test", "X")["X"]
    assert mlflow.pyfunc.load_model(uri).predict(X).shape == (len(X),)  # skops, trusted types
    ev = [r for r in runs if r.data.tags.get("stage") == "evaluate"]
    assert len(ev) == 2 and all(r.info.status == "FINISHED" for r in ev)
    first = ev[-1]
    _check_run_names_and_inputs(client, runs, ev, repo_copy)
    artifacts = {a.path for a in client.list_artifacts(first.info.run_id, "reports")}
    assert "reports/report.html" in artifacts and "reports/report.md" in artifacts
    ranks = {r.data.tags["baseline"]: r.data.tags.get("leaderboard_rank") for r in children}
    assert ranks == {n: str(board["candidates"][n]["rank"]) for n in ranks}
    best_tagged = [
        r.data.tags["baseline"] for r in children if r.data.tags.get("best_model") == "true"
    ]
    assert best_tagged == ([board["best"]] if board["best"] != "network" else [])
    # evaluate registers nothing: the package stage does (tests/test_serve.py)
    assert client.search_model_versions("name = 'reprolab-iris'") == []


def _check_run_names_and_inputs(client, runs, ev, repo):
    """Runs named `<stage> · <DVC experiment | pipeline id>`; the experiment is of kind model
    training; the splits read are dataset inputs whose digest is DVC's md5 of the file."""
    import hashlib

    (exp,) = {r.info.experiment_id for r in runs}
    assert client.get_experiment(exp).tags["mlflow.experimentKind"] == "custom_model_development"
    first, knn_only = ev[-1], ev[0]
    assert first.info.run_name == f"evaluate · {first.data.tags['pipeline_id'][:6]}"
    assert "dvc_experiment" not in first.data.tags
    assert knn_only.info.run_name == "evaluate · knn-only"
    assert knn_only.data.tags["dvc_experiment"] == "knn-only"

    def inputs(run):
        return {
            i.dataset.name: (
                i.dataset.digest,
                {t.key: t.value for t in i.tags}["mlflow.data.context"],
            )
            for i in run.inputs.dataset_inputs
        }

    def md5(path):  # DVC's md5s of the split's files, as "relpath md5" lines, hashed
        folder = repo / "data" / path
        lines = sorted(
            f"{folder.name}/{f.name} {hashlib.md5(f.read_bytes()).hexdigest()}"
            for f in folder.iterdir()
        )
        return hashlib.md5("\n".join(lines).encode()).hexdigest()

    assert inputs(first) == {"iris/prepared/test": (md5("prepared/test"), "test")}
    by_stage = {r.data.tags.get("stage"): r for r in runs}  # newest first: the first of each
    refit = {p: (md5(p), "train") for p in ("augmented/train", "augmented/val")}  # train+val
    expected = {
        "baselines": {  # baselines.use_augmented: false; val is also the validation split
            "prepared/train": (md5("prepared/train"), "train"),
            "prepared/val": (md5("prepared/val"), "train+val"),
        },
        "train": refit | {"prepared/val": (md5("prepared/val"), "val")},
        "compress": refit | {"prepared/val": (md5("prepared/val"), "val")},
    }
    for stage, want in expected.items():
        assert inputs(by_stage[stage]) == {f"iris/{p}": v for p, v in want.items()}, stage
    train = by_stage["train"].info.run_id
    assert client.get_metric_history(train, "lr")  # the learning rate, every epoch
