"""The served model end to end: package stage, pyfunc, predict CLI, registry aliases, HTTP.

Real dvc, real MLflow (sqlite registry, `mlflow models serve` subprocess), tiny params.
One table pipeline (the shipped houses.csv: categoricals and blanks) runs once per module;
the shipped image folder runs one more (regression end to end: test_regression_pipeline).
Every check compares the served model on RAW input (CSV rows, image files) with the
leaderboard's candidate on the prepared test split.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stages.common import splits
from tests.conftest import copy_repo, pipeline_env, run_dvc, run_stage, write_params

pytestmark = pytest.mark.integration
HOUSES = "data/raw/examples/houses.csv"  # numbers, integers, categoricals and blanks

TINY = {
    "augment": {"multiplier": 1},
    "baselines": {
        "models": ["logreg_l2", "random_forest", "knn"],
        "hyperparams": {"random_forest": {"n_estimators": 10}},
    },
    "evaluate": {"bootstrap": 100, "latency_repeats": 2, "latency_budget_s": 0.05},
    "model": {"arch": "mlp", "width": 16, "depth": 1},
    "train": {"max_epochs": 2, "threads": 1},
    "tune": {"enabled": False},
    "compress": {
        "unstructured": {"enabled": False},
        "structured": {"enabled": False},
        "distill": {"enabled": False},
        "quantize": {"static": False},
        "latency": {"repeats": 2, "budget_s": 0.05},
    },
}


@pytest.fixture(scope="module")
def table_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-table")
    repo = copy_repo(root / "repo")
    env = pipeline_env(root)
    write_params(repo, {**TINY, "data": {"source": HOUSES, "target": "sold_fast"}})
    run_dvc(repo, env, "repro", "evaluate")
    return repo, env


def _raw_test(repo: Path):
    """The test split's raw input (as the user has it) and its prepared twin."""
    from stages import config
    from stages.prepare.stage import plan

    cfg = config.load(repo / "params.yaml")
    planned = plan(cfg, repo)
    return planned, splits.load(repo / "data" / "prepared" / "test", "X")["X"]


def _candidate_answer(repo: Path, name: str, X: np.ndarray):
    from stages.common.candidates import discover
    from stages.common.io import read_schema

    schema = read_schema(repo / "data" / "prepared")
    m = repo / "models"
    [c], _ = discover(schema["task"], m / "baselines", m / "model.pt", m / "compressed", only=name)
    return c.predict(X)


def _same(answer: pd.DataFrame, expected, classes: list[str] | None) -> None:
    pred, proba = expected
    if classes is None:
        np.testing.assert_allclose(answer["prediction"], pred, rtol=0, atol=1e-6)
        return
    assert list(answer["label"]) == [classes[i] for i in pred]
    if proba is not None:
        cols = [f"proba_{c}" for c in classes]
        np.testing.assert_allclose(answer[cols].to_numpy(), proba, rtol=0, atol=1e-6)


def _package(repo: Path, env: dict[str, str], candidate: str, *flags: str) -> dict:
    write_params(repo, {"serve": {"candidate": candidate}})
    run_dvc(repo, env, "repro", "package", *flags)
    return json.loads((repo / "metrics" / "package.json").read_text())


def test_champion_rule_and_raw_rows_from_the_registry(table_repo):
    repo, env = table_repo
    board = json.loads((repo / "metrics" / "leaderboard.json").read_text())
    headline = board["headline"]
    scores = {n: row[headline] for n, row in board["candidates"].items()}
    best = board["best"]
    worse = [n for n, v in scores.items() if v < scores[best]]
    assert worse, f"tiny pipeline gave no candidate worse than {best}: {scores}"
    worst = min(worse, key=scores.get)

    first = _package(repo, env, worst)  # nothing registered yet: champion
    assert (first["version"], first["alias"]) == (1, "champion")
    second = _package(repo, env, "best")  # strictly better on the same test data: moves
    assert (second["candidate"], second["version"], second["alias"]) == (best, 2, "champion")
    # worse: challenger, champion stays (--force: the same params and inputs as the first
    # run would be restored from DVC's run cache, registering nothing; --single-item: only
    # package is forced, not every stage upstream of it)
    third = _package(repo, env, worst, "--force", "--single-item")
    assert (third["version"], third["alias"]) == (3, "challenger")

    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])  # conftest restores it after the test
    client = mlflow.MlflowClient()
    name = first["registered_model"]
    champion = client.get_model_version_by_alias(name, "champion")
    assert int(champion.version) == 2 and champion.tags["candidate"] == best
    assert int(client.get_model_version_by_alias(name, "challenger").version) == 3
    tags = champion.tags
    assert tags["kind"] and tags["data_fingerprint"].startswith("sha256:")
    assert float(tags[f"test_{headline}"]) == pytest.approx(scores[best], abs=1e-6)
    assert {f"test_{headline}_ci_low", "git_commit", "params_hash"} <= set(tags)

    planned, X = _raw_test(repo)
    rows = pd.read_csv(repo / HOUSES).iloc[planned.parts["test"]]
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    answer = model.predict(rows.drop(columns=["sold_fast"]))
    classes = planned.target.classes
    _same(answer, _candidate_answer(repo, best, X), classes)
    info = mlflow.models.get_model_info(f"models:/{name}@champion")
    inputs = {c["name"]: c["type"] for c in info.signature.inputs.to_dict()}
    assert inputs == {
        "area": "double",
        "rooms": "long",
        "neighborhood": "string",
        "condition": "string",
        "year_built": "long",
        "price": "double",
    }
    assert [c["name"] for c in info.signature.outputs.to_dict()] == [
        "label",
        *(f"proba_{c}" for c in classes),
    ]


@pytest.mark.parametrize("candidate", ["network", "int8_dynamic", "logreg_l2"])
def test_each_candidate_kind_packages_and_predicts(table_repo, tmp_path, candidate):
    repo, env = table_repo
    params = repo / f"params-{candidate}.yaml"  # data.source is relative to its folder
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["serve"] = {**raw.get("serve", {}), "candidate": candidate, "registry": False}
    params.write_text(yaml.safe_dump(raw))
    out = tmp_path / "served"
    res = run_stage("package", repo, env, "--params", str(params), "--out", str(out),
                    "--metrics", str(tmp_path / "package.json"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    import mlflow

    planned, X = _raw_test(repo)
    csv = pd.read_csv(repo / HOUSES).iloc[planned.parts["test"]]
    answer = mlflow.pyfunc.load_model(str(out)).predict(csv.drop(columns=["sold_fast"]))
    _same(answer, _candidate_answer(repo, candidate, X), planned.target.classes)
    spec = json.loads((out / "artifacts" / "serving.json").read_text())
    assert spec["candidate"] == candidate


def test_predict_cli_and_http_answer_alike_and_refuse_by_name(table_repo, tmp_path):
    repo, env = table_repo
    model = repo / "models" / "serving"
    if not model.exists():
        run_dvc(repo, env, "repro", "package")
    planned, _ = _raw_test(repo)
    rows = pd.read_csv(repo / HOUSES).iloc[planned.parts["test"]]
    rows = rows.drop(columns=["sold_fast"]).head(8)
    new = tmp_path / "new.csv"
    rows.to_csv(new, index=False)
    out = tmp_path / "predictions.csv"
    res = run_stage("predict", repo, env, "--model", str(model), "--input", str(new),
                    "--out", str(out), "--rows", "3")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Add type hints" not in res.stderr  # MLflow's load-time warning, avoided at source
    cli = pd.read_csv(out)
    assert len(cli) == len(rows) and "label" in cli

    bad = tmp_path / "bad.csv"
    rows.drop(columns=["neighborhood"]).to_csv(bad, index=False)
    failed = run_stage("predict", repo, env, "--model", str(model), "--input", str(bad),
                       "--out", str(tmp_path / "never.csv"))  # fmt: skip
    assert (
        failed.returncode == 2
        and "'neighborhood'" in failed.stderr
        and "Traceback" not in failed.stderr
    )
    assert not (tmp_path / "never.csv").exists()
    typo = rows.assign(rooms=rows["rooms"].astype(object))
    typo.loc[typo.index[2], "rooms"] = "three"
    typo.to_csv(bad, index=False)
    failed = run_stage("predict", repo, env, "--model", str(model), "--input", str(bad))
    assert failed.returncode == 2 and "'rooms'" in failed.stderr and "'three'" in failed.stderr

    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", str(model),
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_ready(server, port)
        split = json.loads(rows.to_json(orient="split", index=False))
        status, body = _post(port, {"dataframe_split": split})
        assert status == 200, body
        http = pd.DataFrame(json.loads(body)["predictions"])
        assert list(http["label"]) == list(cli["label"])
        np.testing.assert_allclose(
            http.drop(columns="label").to_numpy(), cli.drop(columns="label").to_numpy(), atol=1e-6
        )
        missing = json.loads(
            rows.drop(columns=["neighborhood"]).to_json(orient="split", index=False)
        )
        status, body = _post(port, {"dataframe_split": missing})
        assert 400 <= status < 500 and "neighborhood" in body and "Traceback" not in body
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_image_folder_model_takes_files_and_bytes(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    env = pipeline_env(tmp_path)
    overrides = {  # 20x20 and 28x28, grayscale and RGB: decoded and resized as in prepare
        "data": {"source": "data/raw/examples/shapes", "image_size": [16, 16]},
        "model": {"arch": "cnn", "width": 8, "depth": 1},
        "baselines": {"models": ["logreg_l2"]},
    }
    write_params(repo, {**TINY, **overrides})
    run_dvc(repo, env, "repro", "package")
    import mlflow

    planned, X = _raw_test(repo)
    files = [str(planned.raw.files[i]) for i in planned.parts["test"]]
    model = mlflow.pyfunc.load_model(str(repo / "models" / "serving"))
    board = json.loads((repo / "metrics" / "leaderboard.json").read_text())
    expected = _candidate_answer(repo, board["best"], X)
    _same(model.predict(pd.DataFrame({"image": files})), expected, planned.target.classes)
    encoded = [Path(f).read_bytes() for f in files]
    _same(model.predict(pd.DataFrame({"image": encoded})), expected, planned.target.classes)

    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    res = run_stage("predict", repo, env, "--input", str(folder), "--out", str(tmp_path / "p.csv"))
    assert res.returncode == 2 and "broken.png" in res.stderr
    assert not (tmp_path / "p.csv").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(server: subprocess.Popen, port: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow models serve exited: {server.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("mlflow models serve did not answer /ping")


def _post(port: int, payload: dict) -> tuple[int, str]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
