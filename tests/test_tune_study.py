"""Tune machinery with real Optuna journal storage and a real MLflow store.

The objective here is a cheap function so the study logic (conditional sampling, stale
trial recovery, budget, nested runs) is tested in isolation; the full stage runs the real
training in tests/test_tune_stage.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import mlflow
import optuna
import pytest

from stages.common.search_space import schema_leaf, set_dotted, suggest, validate_space
from stages.runtime.errors import ConfigError
from stages.schema.tune import Distribution, TuneParams
from stages.tune import study as st
from stages.tune.trial_runs import TrialRun

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "augment.image.rotation.degrees": {"type": "float", "low": 0, "high": 30},
    "augment.multiplier": {"type": "int", "low": 1, "high": 4},
    "data.scaling": {"type": "categorical", "choices": ["standard", "minmax"]},
    "data.max_categories": {
        "type": "int",
        "low": 5,
        "high": 50,
        "step": 5,
        "when": {"data.scaling": ["minmax"]},
    },
}


def _tune(**kw) -> TuneParams:
    return TuneParams.model_validate({"search_space": SPACE, **kw})


def test_valid_space_passes(shipped_params):
    validate_space(_tune().search_space, shipped_params)


def test_trials_fit_on_train_and_the_refit_cannot_take_an_early_stopped_best(shipped_params):
    """A trial fits on train whatever train.fit_on says; but a searched early-stopping or
    ship-best value could not be overlaid on the train+val refit, so it is refused first."""
    from stages.tune.worker import trial_config

    assert shipped_params["train"]["fit_on"] == "train+val"
    cfg = trial_config(shipped_params, _tune(max_epochs=3), {"model.width": 16})
    assert (cfg.train.fit_on, cfg.train.max_epochs, cfg.model.width) == ("train", 3, 16)
    path = "train.early_stopping.enabled"
    space = {path: Distribution.model_validate({"type": "categorical", "choices": [True]})}
    with pytest.raises(ConfigError, match=r"early_stopping.enabled: value True.*fit_on: train"):
        validate_space(space, shipped_params)
    kept_unseen = {**shipped_params, "train": {**shipped_params["train"], "fit_on": "train"}}
    validate_space(space, kept_unseen)


@pytest.mark.parametrize(
    ("path", "dist", "fragment"),
    [
        (
            "augment.image.rotaton.degrees",
            {"type": "float", "low": 0, "high": 1},
            "did you mean 'augment.image.rotation'",
        ),
        ("augment.image", {"type": "float", "low": 0, "high": 1}, "is a section"),
        ("augment.multiplier", {"type": "int", "low": 0, "high": 4}, "value 0 is not accepted"),
        ("data.val_size", {"type": "float", "low": 0.1, "high": 0.99}, "leaves no training data"),
        ("data.scaling", {"type": "categorical", "choices": ["standard", "robust"]}, "'robust'"),
        ("seed", {"type": "int", "low": 1, "high": 3}, "not allowed"),
        ("train.fit_on", {"type": "categorical", "choices": ["train"]}, "always fits on train"),
        ("train.max_epochs", {"type": "int", "low": 2, "high": 4}, "set that instead"),
    ],
)
def test_invalid_paths_and_bounds_refused(shipped_params, path, dist, fragment):
    space = {path: Distribution.model_validate(dist)}
    with pytest.raises(ConfigError) as err:
        validate_space(space, shipped_params)
    assert f"tune.search_space.{path}" in str(err.value) and fragment in str(err.value)


@pytest.mark.parametrize(
    ("dist", "fragment"),
    [
        ({"type": "float", "low": 2, "high": 1}, "low=2 is greater than high=1"),
        ({"type": "float", "low": 0, "high": 1, "log": True}, "log scale needs low > 0"),
        ({"type": "categorical", "choices": []}, "non-empty 'choices'"),
        ({"type": "int", "low": 1.5, "high": 3}, "whole numbers"),
    ],
)
def test_bad_distributions(dist, fragment):
    with pytest.raises(ValueError, match=fragment):
        Distribution.model_validate(dist)


def test_empty_space_and_missing_budget_refused():
    with pytest.raises(ValueError, match="search_space is empty"):
        TuneParams.model_validate({"search_space": {}})
    with pytest.raises(ValueError, match="n_trials and/or timeout"):
        TuneParams.model_validate({"search_space": SPACE, "n_trials": None})


def test_when_must_refer_to_an_earlier_entry():
    bad = dict(reversed(list(SPACE.items())))
    with pytest.raises(ValueError, match="must be an earlier entry"):
        TuneParams.model_validate({"search_space": bad})


def test_conditional_dimension_only_sampled_when_condition_holds():
    tune = _tune()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(30):
        trial = study.ask()
        point = suggest(trial, tune.search_space)
        seen.append(point)
        study.tell(trial, 0.0)
    for point in seen:
        assert ("data.max_categories" in point) == (point["data.scaling"] == "minmax")
        assert point.get("data.max_categories", 5) % 5 == 0
    assert any("data.max_categories" in p for p in seen)


def test_set_dotted_is_pure():
    raw = {"a": {"b": 1}}
    assert set_dotted(raw, "a.c.d", 2) == {"a": {"b": 1, "c": {"d": 2}}} and raw == {"a": {"b": 1}}
    assert schema_leaf("data.synthetic.n_samples") is None


def test_samplers_and_pruners_build():
    for sampler in ("tpe", "random", "cmaes", "gp", "qmc"):
        assert st.make_sampler(_tune(sampler=sampler), 0, 3) is not None
    for pruner in ("hyperband", "successive_halving", "median", "none"):
        assert st.make_pruner(_tune(pruner=pruner)) is not None


def test_reduction_factor_sets_how_many_trials_a_rung_keeps():
    """The same 24 first-epoch values: a larger k prunes more of them at the first rung."""
    import random

    values = list(range(24))
    random.Random(0).shuffle(values)
    pruned = {}
    for k in (2, 4):
        pruner = st.make_pruner(_tune(pruner="successive_halving", reduction_factor=k))
        study = optuna.create_study(direction="maximize", pruner=pruner)
        pruned[k] = 0
        for value in values:
            trial = study.ask()
            trial.report(value, 1)
            pruned[k] += trial.should_prune()
            study.tell(trial, value)
    assert pruned == {2: 11, 4: 18}


def test_journal_study_resumes_by_name(tmp_path):
    tune = _tune(n_trials=3)
    journal = tmp_path / "study" / "journal.log"
    study = st.open_study(tune, "s", 0, journal)
    study.optimize(lambda t: suggest(t, tune.search_space)["augment.multiplier"], n_trials=3)
    again = st.open_study(tune, "s", 0, journal)
    assert st.count(again) == 3 and not st.budget_left(again, tune)


def test_a_study_from_before_the_epochs_trained_steps_is_flagged(tmp_path, caplog):
    tune = _tune()
    journal = tmp_path / "study" / "journal.log"
    assert st.open_study(tune, "new", 0, journal).user_attrs[st.STEP_ATTR] == "epochs_trained"
    old = optuna.create_study(study_name="old", storage=st.make_storage(tune, journal))
    old.optimize(lambda t: 1.0, n_trials=1)  # an older reprolab: no step attribute
    with caplog.at_level("WARNING", logger="reprolab.tune"):
        st.open_study(tune, "old", 0, journal)
    assert "reported Lightning's 0-based epoch" in caplog.text


KILLED_WORKER = textwrap.dedent("""
    import os, sys, time
    from stages.schema.tune import TuneParams
    from stages.tune import study as st
    tune = TuneParams.model_validate({"search_space": {
        "augment.multiplier": {"type": "int", "low": 1, "high": 4}}})
    study = st.open_study(tune, "s", 0, __import__("pathlib").Path(sys.argv[1]))
    def objective(trial):
        st.mark_trial_owner(trial)
        trial.suggest_int("augment.multiplier", 1, 4)
        print("in-trial", flush=True)
        time.sleep(60)
    study.optimize(objective, n_trials=1)
""")


def test_trial_of_a_killed_worker_is_failed_and_requeued(tmp_path):
    journal = tmp_path / "journal.log"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WORKER, str(journal)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "in-trial"
    proc.kill()
    proc.wait(timeout=30)
    tune = TuneParams.model_validate(
        {"search_space": {"augment.multiplier": {"type": "int", "low": 1, "high": 4}}}
    )
    study = st.open_study(tune, "s", 0, journal)
    (stale,) = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert st.recover_stale_trials(study) == 1
    trials = study.get_trials()
    assert trials[0].state == optuna.trial.TrialState.FAIL
    assert "died mid-trial" in trials[0].user_attrs["fail_reason"]
    assert trials[1].state == optuna.trial.TrialState.WAITING
    assert trials[1].params == {} and study.get_trials()[1].user_attrs["retry_of"] == 0
    study.optimize(lambda t: t.suggest_int("augment.multiplier", 1, 4), n_trials=1)
    assert study.trials[1].params == stale.params  # the retry re-used the lost params


def test_trial_runs_nest_under_parent(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("e")
    parent = client.create_run(exp, run_name="tune").info.run_id
    states = {}
    for number, state in enumerate(("complete", "pruned", "fail")):
        run = TrialRun(client, exp, parent, number)
        run.log_params({"train": {"lr": 0.1}})
        for epoch in range(3):
            run.log_epoch({"val/acc": 0.5 + epoch / 10}, epoch)
        run.finish(state, reason=None if state == "complete" else "why")
        states[run.run_id] = state
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'")
    assert len(children) == 3
    for child in children:
        assert child.data.tags["trial_state"] == states[child.info.run_id]
        assert child.data.params["train.lr"] == "0.1"
        assert len(client.get_metric_history(child.info.run_id, "val/acc")) == 3
    assert {c.info.status for c in children} == {"FINISHED", "FAILED"}
