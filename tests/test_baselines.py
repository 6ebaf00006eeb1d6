"""baselines: every model fits on tiny data for both tasks; params are checked up front."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from stages.augment import stage as augment
from stages.baselines import cores, permutation
from stages.baselines import stage as baselines
from stages.common import skops_files, splits
from stages.prepare import stage as prepare
from stages.runtime.errors import ConfigError, UserError
from stages.schema.baselines import ESTIMATORS, TREE_MODELS

# shrunk so every model fits in well under a second
TINY = {
    "random_forest": {"n_estimators": 8},
    "hist_gradient_boosting": {"max_iter": 10},
    "logreg_l1": {"max_iter": 300},
    "gradient_boosting": {"n_estimators": 10},
    "adaboost": {"n_estimators": 10},
}


def _fit(make_params, src, tmp_path, **section):
    cfg = make_params({"baselines": {"hyperparams": TINY, **section}})
    out = tmp_path / "bl"
    results = baselines.run(
        cfg, baselines.Paths(src, tmp_path / "aug", out, tmp_path / "m.json", tmp_path / "imp")
    )
    return cfg, results, out


@pytest.mark.parametrize(
    ("source", "task"), [("wine", "classification"), ("diabetes", "regression")]
)
def test_every_baseline_fits_and_is_saved(make_params, prepared, tmp_path, source, task):
    src = prepared(source)
    _, results, out = _fit(make_params, src, tmp_path, models=list(ESTIMATORS))  # + opt-in
    expected = [n for n in ESTIMATORS if task in ESTIMATORS[n]]
    assert sorted(results) == sorted(expected)
    assert json.loads((tmp_path / "m.json").read_text()) == results
    index = json.loads((out / "index.json").read_text())
    val = splits.load(src / "val", "X", "y")
    for name in expected:
        r = results[name]
        assert r["fit_seconds"] >= 0
        if task == "classification":
            assert r["accuracy"] > 0.5  # wine has 3 classes: chance is ~0.4
        else:
            assert r["rmse"] > 0 and r["r2"] > 0.0
        pipe = skops_files.load_trusted(out / f"{name}.skops")
        assert pipe.steps[0][0] == "preprocess"  # the table's fitted ColumnTransformer
        scorer = skops_files.scoring_pipeline(pipe)
        pred = scorer.predict(val["X"])
        assert pred.shape == (len(val["y"]),)
        assert index["models"][name]["file"] == f"{name}.skops"
        assert 1 <= index["models"][name]["threads"] <= cores.usable_cores()  # n_threads: auto
        assert index["models"][name]["blas_threads"] == 1
    # every model gets importances: impurity for trees, permutation (on val) for the rest
    assert {p.stem for p in (tmp_path / "imp").glob("*.csv")} == set(expected)
    assert {p.stem for p in (tmp_path / "imp").glob("*.png")} == set(expected)
    for name in expected:
        rows = (tmp_path / "imp" / f"{name}.csv").read_text().splitlines()
        kinds = {line.rsplit(",", 1)[1] for line in rows[1:]}
        assert kinds == {"impurity" if name in TREE_MODELS else "permutation"}


def test_saved_pipeline_carries_the_fitted_preprocessing(make_params, tmp_path):
    """The saved model predicts from raw table rows, as the preprocessor + model would."""
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    cfg = make_params({"data": {"source": "breast_cancer"}})
    src = tmp_path / "p"
    prepare.run(cfg, src, root=tmp_path)
    _, _, out = _fit(make_params, src, tmp_path, models=["logreg_l2"])
    pipe = skops_files.load_trusted(out / "logreg_l2.skops")
    raw = load_breast_cancer(as_frame=True).frame.drop(columns="target").iloc[:20]
    direct = pipe[-1].predict_proba(pipe[0].transform(raw))
    np.testing.assert_allclose(pipe.predict_proba(pd.DataFrame(raw)), direct)


def test_images_are_flattened_and_augmented_train_is_optional(make_params, prepared, tmp_path):
    src = prepared("digits")
    aug_cfg = make_params({"augment": {"multiplier": 2}})
    augment.run(aug_cfg, src, tmp_path / "aug")
    models = ["decision_tree_gini", "knn"]
    _, plain, out = _fit(make_params, src, tmp_path, models=models)
    _, aug, _ = _fit(make_params, src, tmp_path, models=models, use_augmented=True)
    assert plain["knn"]["accuracy"] > 0.9
    assert plain["decision_tree_gini"] != aug["decision_tree_gini"]  # trained on other rows
    pipe = skops_files.load_trusted(out / "knn.skops")
    assert pipe.steps[0][0] == "flatten"
    X = splits.load(src / "test", "X")["X"]
    assert X.ndim == 4 and pipe.predict(X[:3]).shape == (3,)
    heat = (tmp_path / "imp" / "decision_tree_gini.csv").read_text().splitlines()
    assert heat[0] == "feature,importance,kind" and len(heat) == 1 + 64


def test_permutation_importance_is_sklearns_on_the_sampled_val_rows(make_params, tmp_path):
    """A non-tree model's importances are sklearn's permutation_importance, seeded."""
    from sklearn.inspection import permutation_importance

    cfg = make_params({"data": {"source": "breast_cancer"}})
    src = tmp_path / "p"
    prepare.run(cfg, src, root=tmp_path)
    cfg, _, out = _fit(make_params, src, tmp_path, models=["logreg_l2"])
    rows = (tmp_path / "imp" / "logreg_l2.csv").read_text().splitlines()[1:]
    got = {line.split(",")[0]: float(line.split(",")[1]) for line in rows}
    val = splits.load(src / "val", "X", "y")
    model = skops_files.load_trusted(out / "logreg_l2.skops")[-1]
    rng = np.random.default_rng(cfg.seed)
    n = len(val["y"])
    keep = np.sort(rng.choice(n, size=min(n, cfg.baselines.permutation_rows), replace=False))
    want = permutation_importance(
        model, val["X"][keep], val["y"][keep], n_repeats=3, random_state=cfg.seed
    ).importances_mean
    assert len(got) == len(want) and max(want) > 0  # some feature matters
    np.testing.assert_allclose(sorted(got.values()), sorted(want), atol=1e-6)


def test_seeded_fits_are_reproducible(make_params, prepared, tmp_path):
    src = prepared("iris")
    _, a, _ = _fit(make_params, src, tmp_path, models=["random_forest"])
    _, b, _ = _fit(make_params, src, tmp_path, models=["random_forest"])
    a["random_forest"].pop("fit_seconds"), b["random_forest"].pop("fit_seconds")
    assert a == b


def test_models_without_a_task_variant_are_skipped(make_params, prepared, tmp_path, caplog):
    caplog.set_level(logging.INFO, "reprolab.baselines")
    src = prepared("iris")
    _, results, _ = _fit(make_params, src, tmp_path, models=["knn", "lasso"])
    assert list(results) == ["knn"]
    assert "skipped: lasso" in caplog.text
    with pytest.raises(UserError, match="none has a classification variant"):
        _fit(make_params, src, tmp_path, models=["lasso"])


def test_wrong_hyperparameter_name_is_named_with_a_suggestion(make_params):
    with pytest.raises(ConfigError) as err:
        make_params({"baselines": {"hyperparams": {"random_forest": {"n_estimator": 5}}}})
    msg = str(err.value)
    assert "baselines.hyperparams" in msg and "random_forest.n_estimator" in msg
    assert "did you mean 'n_estimators'" in msg


def test_wrong_hyperparameter_value_and_model_name(make_params):
    with pytest.raises(ConfigError, match=r"knn = \{'n_neighbors': -3\}.*n_neighbors"):
        make_params({"baselines": {"hyperparams": {"knn": {"n_neighbors": -3}}}})
    with pytest.raises(ConfigError, match="unknown model 'random_forrest'; did you mean"):
        make_params({"baselines": {"models": ["random_forrest"]}})


def test_stages_that_fit_no_baseline_skip_the_estimator_check_but_not_the_names(make_params):
    """train/tune/compress validate inside `without_estimator_checks` (no sklearn import);
    an unknown model is still refused there, and the check is back on after it."""
    from stages import config

    bad_value = {"baselines": {"hyperparams": {"knn": {"n_neighbors": -3}}}}
    with config.without_estimator_checks():
        assert make_params(bad_value).baselines.hyperparams["knn"] == {"n_neighbors": -3}
        with pytest.raises(ConfigError, match="unknown model 'random_forrest'"):
            make_params({"baselines": {"hyperparams": {"random_forrest": {}}}})
    with pytest.raises(ConfigError, match=r"knn = \{'n_neighbors': -3\}"):
        make_params(bad_value)


def test_skops_imports_without_torch_and_trusts_the_same_types():
    """A fresh interpreter: `skops_io()` leaves torch unimported (sklearn's array-API torch
    shim stays importable afterwards), and skops trusts exactly the types a plain
    `import skops.io` trusts."""
    import subprocess
    import sys

    probe = """
import json, sys
{first}
import skops.io._trusted_types as t
names = {{n: sorted(map(str, getattr(t, n))) for n in dir(t)
         if n.isupper() and isinstance(getattr(t, n), (list, tuple, set))}}
torch_before = "torch" in sys.modules
import sklearn.externals.array_api_compat.torch  # the shim still imports
print(json.dumps([torch_before, names]))
"""
    out = []
    for first in ("from stages.common.skops_files import skops_io; skops_io()", "import skops.io"):
        res = subprocess.run([sys.executable, "-c", probe.format(first=first)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        out.append(json.loads(res.stdout))
    (ours_torch, ours), (_, plain) = out
    assert ours_torch is False
    assert ours == plain and len(ours["SKLEARN_ESTIMATOR_TYPE_NAMES"]) > 100


def test_untrusted_types_in_a_model_file_are_refused(tmp_path):
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "evil.skops"
    sio.dump(FunctionTransformer(os.system), path)
    with pytest.raises(UserError, match=r"refusing to load types \['posix.system'\]"):
        skops_files.load_trusted(path)


def test_max_rows_fits_on_a_seeded_stratified_sample(make_params, prepared, tmp_path, caplog):
    """Over `baselines.max_rows`, a model is fit on that many rows: the same seeded sample
    every run, each class keeping its share; `model_max_rows` caps one model lower."""
    from stages.baselines import rows
    from stages.common import fit_rows

    caplog.set_level(logging.INFO, "reprolab.baselines")
    src = prepared("iris")
    models = ["knn", "decision_tree_gini"]
    cfg, a, out = _fit(
        make_params, src, tmp_path, models=models, max_rows=60, model_max_rows={"knn": 30}
    )
    train, _ = fit_rows.load(src, cfg.train.fit_on)  # the stage's fit rows, before the cap
    n_train = len(train["y"])
    assert (a["knn"]["fit_rows"], a["decision_tree_gini"]["fit_rows"]) == (30, 60)
    assert f"model=knn fit_rows=30 of {n_train}" in caplog.text
    index = json.loads((out / "index.json").read_text())
    assert index["max_rows"] == 60 and index["models"]["knn"]["fit_rows"] == 30
    knn = skops_files.load_trusted(out / "knn.skops")[-1]
    keep = rows.sample(train["y"], 30, "classification", cfg.seed)
    np.testing.assert_array_equal(knn._fit_X, train["X"].reshape(n_train, -1)[keep])
    share = np.bincount(train["y"].astype(int)) * 30 / n_train
    assert np.all(np.abs(np.bincount(knn._y, minlength=len(share)) - share) < 1)
    _, b, _ = _fit(
        make_params, src, tmp_path, models=models, max_rows=60, model_max_rows={"knn": 30}
    )
    for r in (a, b):
        for m in r.values():
            m.pop("fit_seconds")
    assert a == b
    _, full, _ = _fit(make_params, src, tmp_path, models=["knn"], max_rows=None, model_max_rows={})
    assert full["knn"]["fit_rows"] == n_train


def test_row_sample_is_stratified_seeded_and_whole_under_the_cap():
    from stages.baselines import rows

    y = np.repeat([0, 1, 2], [700, 200, 100])
    keep = rows.sample(y, 100, "classification", seed=3)
    assert len(keep) == 100 and np.all(np.diff(keep) > 0)
    assert np.bincount(y[keep]).tolist() == [70, 20, 10]
    np.testing.assert_array_equal(keep, rows.sample(y, 100, "classification", seed=3))
    assert not np.array_equal(keep, rows.sample(y, 100, "classification", seed=4))
    assert len(set(rows.sample(y.astype(float), 250, "regression", seed=0))) == 250
    np.testing.assert_array_equal(rows.sample(y, 5000, "classification", 0), np.arange(1000))


def test_row_caps_are_checked(make_params):
    with pytest.raises(ConfigError, match="unknown model 'svc'"):
        make_params({"baselines": {"model_max_rows": {"svc": 100}}})
    with pytest.raises(ConfigError, match="max_rows"):
        make_params({"baselines": {"max_rows": 0}})


def _noisy(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    return X, X[:, 0] * 2 + np.sin(3 * X[:, 1]) + rng.normal(0, 0.5, n)


def _file_mb(model, tmp_path) -> float:
    path = tmp_path / "m.skops"
    skops_files.save_model(model, path)
    return path.stat().st_size / 2**20


def test_a_forest_over_max_model_mb_is_grown_to_fit_and_says_so(tmp_path):
    from sklearn.ensemble import RandomForestRegressor

    from stages.baselines import size_budget

    X, y = _noisy()
    fit = lambda est, X, y: baselines.fit(est, X, y, cores.Threads(1, 1))  # noqa: E731
    full, note = size_budget.grow_within(
        RandomForestRegressor(20, random_state=0), X, y, 100.0, fit, "random_forest"
    )
    assert note is None and full.get_params()["max_leaf_nodes"] is None  # within: as configured
    grown_mb = _file_mb(full, tmp_path)
    assert grown_mb > 2.0  # ~one leaf per distinct bootstrap row
    small, note = size_budget.grow_within(
        RandomForestRegressor(20, random_state=0), X, y, 1.0, fit, "random_forest"
    )
    assert note and "baselines.max_model_mb = 1 " in note
    projected = float(re.search(r"store ~([\d.,]+) MB", note).group(1))
    assert abs(projected - grown_mb) < 0.1 * grown_mb  # one tree predicts the forest's file
    leaves = small.get_params()["max_leaf_nodes"]
    assert all(t.get_n_leaves() <= leaves for t in small.estimators_)
    assert _file_mb(small, tmp_path) <= 1.0
    assert small.score(X, y) > 0.8  # still a forest that fits the signal
    same = RandomForestRegressor(20, random_state=0).fit(X, y)  # within: the plain fit
    np.testing.assert_array_equal(full.predict(X), same.predict(X))


def test_a_forest_over_budget_keeps_fewer_fully_grown_trees_first(tmp_path):
    from sklearn.ensemble import RandomForestRegressor

    from stages.baselines import size_budget

    X, y = _noisy()
    fit = lambda est, X, y: baselines.fit(est, X, y, cores.Threads(1, 1))  # noqa: E731
    one = RandomForestRegressor(1, random_state=0).fit(X, y)
    per_tree_mb = size_budget.tree_bytes(one.estimators_[0].tree_.node_count, 1) / 2**20
    budget = 55 * per_tree_mb  # room for 52 of the 60 trees, fully grown
    est = RandomForestRegressor(60, random_state=0)
    forest, note = size_budget.grow_within(est, X, y, budget, fit, "random_forest")
    assert size_budget.MIN_TREES <= len(forest.estimators_) < 60
    assert forest.get_params()["max_leaf_nodes"] is None and "fully grown trees" in note
    assert _file_mb(forest, tmp_path) <= budget


def test_a_single_tree_over_budget_is_refit_and_user_limits_are_left_alone():
    from sklearn.tree import DecisionTreeRegressor

    from stages.baselines import size_budget

    X, y = _noisy()
    fit = lambda est, X, y: est.fit(X, y)  # noqa: E731
    tree, note = size_budget.grow_within(
        DecisionTreeRegressor(random_state=0), X, y, 0.05, fit, "t"
    )
    assert note and size_budget.tree_bytes(tree.tree_.node_count, 1) <= 0.05 * 2**20
    deep = DecisionTreeRegressor(max_depth=30, random_state=0)
    tree, note = size_budget.grow_within(deep, X, y, 0.05, fit, "t")  # the user's bound
    assert note is None and tree.get_params()["max_leaf_nodes"] is None
    tree, note = size_budget.grow_within(DecisionTreeRegressor(), X, y, None, fit, "t")
    assert note is None  # max_model_mb: null = fully grown


def test_tree_model_defaults_follow_the_data_unless_set():
    from stages.schema.baselines import make_estimator

    for task in ("classification", "regression"):
        table = make_estimator("random_forest", task, {}, modality="table")
        image = make_estimator("random_forest", task, {}, modality="image")
        mine = make_estimator("random_forest", task, {"max_features": 0.2}, modality="table")
        assert table.max_features == 0.5 and image.max_features == "sqrt"
        assert mine.max_features == 0.2  # params.yaml's hyperparams win
    image = make_estimator("hist_gradient_boosting", "classification", {}, modality="image")
    table = make_estimator("hist_gradient_boosting", "classification", {}, modality="table")
    assert (image.max_features, image.learning_rate, image.max_iter) == (0.3, 0.2, 50)
    assert (image.max_bins, table.max_bins) == (31, 255)
    assert (table.max_features, table.learning_rate, table.max_iter) == (1.0, 0.1, 100)


def test_auto_threads_leave_out_the_cores_other_processes_keep_busy():
    free = cores.FreeCores()
    all_cores = cores.usable_cores()
    assert cores.threads(3, free) == (3, 3) and cores.threads(None, free) == (all_cores,) * 2
    auto = cores.threads("auto", free)
    assert 1 <= auto.n <= all_cores and auto.blas == 1  # BLAS: one thread, same sums
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the spinner is running; start a fresh window on it
        free.others_busy()
        time.sleep(0.5)
        assert free.others_busy() >= 0.4  # a core's worth, less what the machine took back
        time.sleep(0.5)
        n = free()
    finally:
        spin.kill()
        spin.wait()
    if cores.usable_cores() == len(cores._cpus()) == psutil.cpu_count() > 1:
        assert n <= cores.usable_cores() - 1  # the spinner's core is not offered


class _Readings(cores.FreeCores):
    """FreeCores over given (wall s, machine busy CPU s, own CPU s) readings."""

    def __init__(self, *readings):
        self._readings = iter(readings)
        self._mark = next(self._readings)

    def _read(self):
        return next(self._readings)


def test_auto_threads_count_only_other_processes_as_busy(monkeypatch):
    monkeypatch.setattr(cores, "_cpus", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(cores, "usable_cores", lambda: 4)
    # 2 s: the machine was busy 5 CPU s, 4 of them this process's own fit -> 0.5 cores taken
    assert _Readings((0, 0, 0), (2, 5, 4))() == 4  # 3.5 idle rounds up
    assert _Readings((0, 0, 0), (2, 6, 4))() == 3  # one core's worth busy elsewhere
    assert _Readings((0, 0, 0), (1, 9, 1))() == 1  # overloaded: at least one thread
    free = _Readings((0, 0, 0), (1, 1, 1), (3, 7, 1))  # each call reads from the last one
    assert (free(), free()) == (4, 1)


@pytest.mark.parametrize("chunk", [permutation.CHUNK_VALUES, 500])  # one stack / many
def test_stacked_permutation_importance_equals_sklearns_feature_by_feature(monkeypatch, chunk):
    from sklearn.datasets import load_diabetes, load_wine
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.inspection import permutation_importance
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    monkeypatch.setattr(permutation, "CHUNK_VALUES", chunk)
    monkeypatch.setattr(permutation, "PIECE_ROWS", 200)  # several predicts per stack
    wine_X, wine_y = load_wine(return_X_y=True)
    wine_X = StandardScaler().fit_transform(wine_X)
    names = np.array(["barolo", "grignolino", "barbera"])[wine_y]  # string labels
    models = [
        (HistGradientBoostingClassifier(max_iter=10), wine_X, wine_y),
        (KNeighborsClassifier(n_jobs=2), wine_X, names),
        (SVC(), wine_X, names),
        (LogisticRegression(), wine_X, names),
        (Ridge(), *load_diabetes(return_X_y=True)),
    ]
    for model, X, y in models:
        model.fit(X[::2], y[::2])
        want = permutation_importance(model, X[1::2], y[1::2], n_repeats=4, random_state=7)
        one = permutation.importances(model, X[1::2], y[1::2], n_repeats=4, seed=7)
        two = permutation.importances(model, X[1::2], y[1::2], n_repeats=4, seed=7, workers=2)
        assert np.abs(want.importances_mean).max() > 0.01, model  # the features matter
        np.testing.assert_allclose(one, want.importances_mean, rtol=0, atol=1e-12)
        assert np.array_equal(one, two)  # the same pieces at any thread count
    assert models[1][0].n_jobs == 2  # the model's own setting is back after the pool
