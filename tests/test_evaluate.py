"""evaluate: the leaderboard holds exactly the candidates whose inputs exist, scored alike."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stages.baselines import stage as baselines
from stages.common import skops_files, splits
from stages.evaluate import stage as evaluate
from stages.prepare import stage as prepare
from stages.runtime.errors import UserError

TINY = {"random_forest": {"n_estimators": 8}, "hist_gradient_boosting": {"max_iter": 10}}
FAST = {"bootstrap": 200, "latency_repeats": 2, "latency_budget_s": 0.05}


def _stage_inputs(make_params, tmp_path, source, models):
    cfg = make_params(
        {"data": {"source": source}, "baselines": {"models": models, "hyperparams": TINY}}
    )
    prepared = tmp_path / "prepared"
    prepare.run(cfg, prepared, root=tmp_path)
    bl = tmp_path / "models" / "baselines"
    baselines.run(
        cfg, baselines.Paths(prepared, tmp_path / "aug", bl, tmp_path / "bl.json", tmp_path / "imp")
    )
    return prepared, bl


def _evaluate(make_params, tmp_path, prepared, bl, **section):
    cfg = make_params({"evaluate": {**FAST, **section}})
    models = tmp_path / "models"
    paths = evaluate.Paths(
        prepared=prepared,
        baselines=bl,
        model=models / "model.pt",
        compressed=models / "compressed",
        metrics=tmp_path / "metrics" / "leaderboard.json",
        plots=tmp_path / "plots",
        reports=tmp_path / "reports",
        importance=tmp_path / "imp",
    )
    summary = evaluate.run(cfg, paths)
    return summary, json.loads(paths.metrics.read_text())


def _onnx_softmax_regression(path, coef, intercept):
    """A real ONNX graph (X @ W + b -> softmax) holding a fitted linear model's weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    d, k = coef.shape[1], coef.shape[0]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["z0"]),
            helper.make_node("Add", ["z0", "b"], ["z"]),
            helper.make_node("Softmax", ["z"], ["p"], axis=1),
        ],
        "softmax_regression",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, d])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, k])],
        [
            numpy_helper.from_array(coef.T.astype(np.float32), "W"),
            numpy_helper.from_array(intercept.astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_leaderboard_has_exactly_the_candidates_whose_inputs_exist(make_params, tmp_path):
    prepared, bl = _stage_inputs(
        make_params, tmp_path, "wine", ["logreg_l2", "knn", "decision_tree_gini"]
    )
    (bl / "knn.skops").unlink()  # listed in index.json, file gone
    compressed = tmp_path / "models" / "compressed"
    compressed.mkdir()
    lr = skops_files.load_trusted(bl / "logreg_l2.skops")[-1]
    _onnx_softmax_regression(compressed / "logreg_int8.onnx", lr.coef_, lr.intercept_)
    (compressed / "notes.txt").write_text("not a model")

    summary, board = _evaluate(make_params, tmp_path, prepared, bl)
    assert set(board["candidates"]) == {"logreg_l2", "decision_tree_gini", "logreg_int8"}
    notes = " | ".join(summary["notes"])
    assert "baseline knn" in notes and "model.pt missing" in notes
    assert "notes.txt: unknown format" in notes
    onnx_row, lr_row = board["candidates"]["logreg_int8"], board["candidates"]["logreg_l2"]
    # same weights through onnxruntime: same predictions and (to float32) the same log-loss
    assert onnx_row["accuracy"] == lr_row["accuracy"]
    assert onnx_row["log_loss"] == pytest.approx(lr_row["log_loss"], rel=1e-4)
    assert onnx_row["n_params"] == lr.coef_.size + lr.intercept_.size
    ranks = sorted(r["rank"] for r in board["candidates"].values())
    assert ranks == [1, 2, 3]
    best = board["candidates"][board["best"]]
    assert best["rank"] == 1 and best["accuracy_ci_low"] <= best["accuracy"]
    assert best["accuracy"] <= best["accuracy_ci_high"]
    for row in board["candidates"].values():
        assert row["latency_ms_b1"] > 0 and row["latency_ms_b256"] > 0 and row["bytes"] > 0
    assert len(summary["comparisons"]) == 2
    assert all(c["best"] == board["best"] for c in summary["comparisons"])


def test_classification_outputs_and_report(make_params, tmp_path):
    prepared, bl = _stage_inputs(make_params, tmp_path, "breast_cancer", ["logreg_l2", "knn"])
    summary, board = _evaluate(make_params, tmp_path, prepared, bl)
    assert board["headline"] == "accuracy" and board["task"] == "classification"
    assert board["candidates"]["logreg_l2"]["accuracy"] > 0.9
    assert 0.5 < board["candidates"]["logreg_l2"]["roc_auc"] <= 1.0
    plots = tmp_path / "plots"
    assert {p.name for p in plots.iterdir()} == {
        "confusion.csv", "confusion.png", "calibration.png", "roc.csv", "roc.png", "pr.png",
        "pareto.png",
    }  # fmt: skip
    rows = (plots / "confusion.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == 1 + summary["schema"]["rows"]["test"]
    detail = json.loads((tmp_path / "reports" / "evaluation.json").read_text())
    assert set(detail["per_class"]["knn"]) == set(summary["schema"]["classes"])
    md = (tmp_path / "reports" / "report.md").read_text()
    assert "| 1 | " in md and "95% CI" in md and "breast_cancer" in md
    assert "](../plots/confusion.png)" in md
    assert "| evaluate.bootstrap | " in md and '"evaluate": {' not in md  # a diff, not a dump
    html = (tmp_path / "reports" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 + 2  # plots + one importance figure each
    # the baselines' permutation importances: the CSV's five largest, in the report
    lines = (tmp_path / "imp" / "knn.csv").read_text().splitlines()[1:6]
    want = [[f, float(v)] for f, v, _ in (line.split(",") for line in lines)]
    assert detail["importance"]["knn"] == {"kind": "permutation", "top": want}
    assert "| knn | permutation | " in md and "](../imp/knn.png)" in md
    assert "http://" not in html and "https://" not in html  # self-contained


def test_regression_uses_r2_and_writes_residual_plots(make_params, tmp_path):
    prepared, bl = _stage_inputs(make_params, tmp_path, "diabetes", ["linear", "decision_tree"])
    _, board = _evaluate(make_params, tmp_path, prepared, bl)
    assert board["headline"] == "r2" and board["best"] == "linear"
    assert 0.2 < board["candidates"]["linear"]["r2"] < 0.8
    assert board["candidates"]["linear"]["rmse"] > 0
    names = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"predictions.csv", "pred_vs_actual.png", "residuals.png", "pareto.png"} == names
    _, by_mae = _evaluate(make_params, tmp_path, prepared, bl, headline="mae")
    assert by_mae["headline"] == "mae" and "mae_ci_low" in by_mae["candidates"]["linear"]


def test_headline_must_fit_the_task_and_something_must_exist(make_params, tmp_path):
    prepared, bl = _stage_inputs(make_params, tmp_path, "iris", ["knn"])
    with pytest.raises(UserError, match=r"evaluate.headline = 'r2' does not apply"):
        _evaluate(make_params, tmp_path, prepared, bl, headline="r2")
    with pytest.raises(UserError, match="nothing to evaluate"):
        _evaluate(make_params, tmp_path, prepared, tmp_path / "none")


def test_same_seed_same_intervals(make_params, tmp_path):
    prepared, bl = _stage_inputs(make_params, tmp_path, "iris", ["knn", "logreg_l2"])
    _, a = _evaluate(make_params, tmp_path, prepared, bl)
    _, b = _evaluate(make_params, tmp_path, prepared, bl)
    for name in a["candidates"]:
        for key in ("accuracy_ci_low", "accuracy_ci_high", "accuracy", "log_loss"):
            assert a["candidates"][name][key] == b["candidates"][name][key]


def test_trained_network_joins_the_leaderboard(make_params, tmp_path):
    """models/model.pt written with the train stage's own serialization becomes a candidate."""
    serialization = pytest.importorskip("lightning_modules.serialization")
    import torch

    from lightning_modules.networks import build_network

    prepared, bl = _stage_inputs(make_params, tmp_path, "iris", ["logreg_l2"])
    schema = json.loads((prepared / "schema.json").read_text())
    torch.manual_seed(0)
    kwargs = {"input_shape": schema["input_shape"], "n_outputs": 3}
    net = build_network("mlp", **kwargs)
    payload = serialization.package(net, "mlp", kwargs, "multiclass", {}, schema, "run-123")
    serialization.save_network(tmp_path / "models" / "model.pt", payload)

    summary, board = _evaluate(make_params, tmp_path, prepared, bl)
    assert set(board["candidates"]) == {"logreg_l2", "network"}
    row = board["candidates"]["network"]
    assert row["n_params"] == sum(p.numel() for p in net.parameters())
    assert summary["run_ids"]["network"] == "run-123"
    test = splits.load(prepared / "test")
    X, y = test["X"], test["y"]
    proba = serialization.predict(net.eval(), payload, X)
    assert row["accuracy"] == pytest.approx((proba.argmax(axis=1) == y).mean())
    # the baselines refit on train+val (shipped train.fit_on); this network's params say train
    assert any("not like for like: the network was fit on train" in n for n in summary["notes"])
    same_rows = {"train": {"fit_on": "train+val"}}
    payload = serialization.package(net, "mlp", kwargs, "multiclass", same_rows, schema, "r")
    serialization.save_network(tmp_path / "models" / "model.pt", payload)
    summary, _ = _evaluate(make_params, tmp_path, prepared, bl)
    assert not any("like for like" in n for n in summary["notes"])

    (tmp_path / "models" / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="model.pt: cannot load the network"):
        _evaluate(make_params, tmp_path, prepared, bl)


def test_report_params_are_the_diff_against_defaults_and_the_tuned_values():
    from stages.evaluate.report import params_diff

    params = {
        "train": {"max_epochs": 30, "optimizer": {"lr": 0.01, "name": "adamw"}},
        "candidates": {"network": {"train": {"max_epochs": 30, "optimizer": {"lr": 0.002}}}},
    }
    changed, tuned = params_diff(params)
    assert changed == [["train.optimizer.lr", "0.0100", "0.0050"]]  # the default lr is 5e-3
    assert tuned == [["train.optimizer.lr", "0.0020", "0.0100"]]


def test_test_split_is_scored_in_batches_in_row_order(monkeypatch):
    calls = []

    def predict(X):
        calls.append(len(X))
        return X[:, 0].astype(int), np.c_[1 - X[:, 1], X[:, 1]]

    monkeypatch.setattr(evaluate, "SCORE_BATCH", 4)
    X = np.c_[np.arange(10) % 2, np.linspace(0, 1, 10)]
    pred, proba = evaluate._predict_in_batches(predict, X)
    assert calls == [4, 4, 2]  # never the whole split at once
    np.testing.assert_array_equal(pred, np.arange(10) % 2)
    np.testing.assert_allclose(proba[:, 1], np.linspace(0, 1, 10))
    _, none = evaluate._predict_in_batches(lambda X: (X[:, 0], None), X)
    assert none is None
