"""Each tuning technique the params offer, proven by its effect in a tiny real run (CPU).

Samplers: the project's sampler factory on a cheap objective (what a trial suggests goes
through the same `suggest`). Hyperband and the multi-objective front: the tune stage's own
session in-process, real training trials on a small synthetic table, a real journal study
and a real MLflow store in tmp_path.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from stages import config
from stages.common import io
from stages.common.search_space import suggest
from stages.schema.tune import TuneParams
from stages.tune import study as st
from tests.conftest import deep_update
from tests.test_tune_stage import TINY as STAGE_TINY

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "train.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "model.depth": {"type": "int", "low": 1, "high": 4},
    "model.width": {"type": "categorical", "choices": [8, 16, 32]},
}
SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
}
STARTUP, N = 2, 5  # trials 2..4 come from the sampler's own model (tpe, cmaes, gp)


def _proposals(
    journal: Path, sampler: str, seed: int, n: int = N
) -> tuple[optuna.Study, list[dict]]:
    """A fresh study (own journal) of `n` trials on a cheap objective; what it proposed."""
    tune = TuneParams.model_validate(
        {"search_space": SPACE, "sampler": sampler, "n_startup_trials": STARTUP}
    )
    study = st.open_study(tune, journal.stem, seed, journal)
    points: list[dict] = []

    def objective(trial: optuna.Trial) -> float:
        p = suggest(trial, tune.search_space)
        points.append(p)
        lr, width = math.log10(p["train.optimizer.lr"]), p["model.width"]
        return (lr + 2) ** 2 + p["model.dropout"] + p["model.depth"] / 10 + (width != 16)

    study.optimize(objective, n_trials=n)
    return study, points


def _inside(point: dict) -> bool:
    lr, dropout, depth = (point[k] for k in ("train.optimizer.lr", "model.dropout", "model.depth"))
    return (
        1e-4 <= lr <= 1e-1
        and 0.0 <= dropout <= 0.5
        and isinstance(depth, int)
        and 1 <= depth <= 4
        and point["model.width"] in (8, 16, 32)
    )


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_each_sampler_proposes_inside_the_space_and_is_seeded(tmp_path, sampler):
    study, first = _proposals(tmp_path / "first.log", sampler, seed=7)
    assert isinstance(study.sampler, SAMPLERS[sampler])
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * N  # none failed
    assert len(first) == N and all(_inside(p) for p in first), first
    _, again = _proposals(tmp_path / "again.log", sampler, seed=7)
    assert again == first  # same seed: the same proposals, model-based ones included
    _, other = _proposals(tmp_path / "other.log", sampler, seed=8, n=1)
    assert other[0] != first[0]  # the seed reaches the sampler
    if sampler in ("tpe", "cmaes", "gp"):
        _, plain = _proposals(tmp_path / "plain.log", "random", seed=7)
        assert first[:STARTUP] == plain[:STARTUP]  # startup: the seeded random sampler
        assert all(a != b for a, b in zip(first[STARTUP:], plain[STARTUP:], strict=True))


# the tune stage tests' tiny table and network; trials read prepared data, one thread each
TINY = {k: STAGE_TINY[k] for k in ("data", "augment", "model")} | {
    "train": {"max_epochs": 2, "batch_size": 64, "use_augmented": False, "threads": 1}
}


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """One MLflow store for the module: creating a sqlite store runs every migration (~5 s)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


def _tune(shipped_params, prepared, tmp_path, tune: dict, batch_size: int = 64, study=None):
    """The tune stage's session in-process; returns (metrics, study, parent MLflow run)."""
    from stages.tune.session import TuneSession

    experiment = f"tune-{tmp_path.name}"
    overrides = {
        **TINY,
        "tune": tune,
        "train": {**TINY["train"], "batch_size": batch_size},
        "mlflow": {"experiment": experiment},
    }
    raw = deep_update(shipped_params, overrides)
    raw["tune"]["search_space"] = tune["search_space"]  # as given, not merged
    cfg = config.validate(raw, tmp_path / "params.yaml")
    data = prepared("synthetic", synthetic=TINY["data"]["synthetic"])
    args = argparse.Namespace(
        params=str(tmp_path / "params.yaml"),
        prepared=str(data),
        augmented=str(data),
        out=str(tmp_path / "tuning"),
        metrics=str(tmp_path / "metrics" / "tune.json"),
        study_name=study,
        parent_run_id=None,
    )
    metrics = TuneSession(cfg, raw, io.read_schema(data), args).run_as_stage()
    assert json.loads(Path(args.metrics).read_text()) == metrics
    loaded = optuna.load_study(
        study_name=metrics["study"],
        storage=st.make_storage(cfg.tune, tmp_path / "tuning" / "study" / "journal.log"),
        pruner=st.make_pruner(cfg.tune),
    )
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    (parent,) = client.search_runs([exp.experiment_id], "tags.stage = 'tune'")
    return metrics, loaded, parent


def test_hyperband_prunes_at_its_rungs_in_a_real_study(
    shipped_params, prepared, tmp_path, mlflow_store
):
    """8 real trials, 4 epochs, reduction factor 2: rungs after 1, 2 (and 4) epochs. A good
    and a useless learning rate: the useless one is stopped at a rung, never after the last
    epoch (that saves nothing and would throw a trained trial away)."""
    tune = {
        "n_trials": 8,
        "max_epochs": 4,
        "pruner": "hyperband",
        "reduction_factor": 2,
        "sampler": "random",
        "search_space": {"train.optimizer.lr": {"type": "categorical", "choices": [0.05, 1e-5]}},
    }
    metrics, study, parent = _tune(
        shipped_params, prepared, tmp_path, tune, batch_size=16, study="hyperband-rungs"
    )
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    assert metrics["finished"] == 8 and parent.data.metrics["trials_pruned"] >= 1
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned and len(pruned) + len(complete) == 8
    for t in complete:
        assert sorted(t.intermediate_values) == [1, 2, 3, 4]
    for t in pruned:
        stopped = max(t.intermediate_values)
        assert stopped in (1, 2), t.intermediate_values  # a rung below max_epochs
        assert sorted(t.intermediate_values) == list(range(1, stopped + 1))
        assert t.user_attrs["epochs"] == stopped and t.user_attrs["pruned_at_epoch"] == stopped - 1
        assert t.params["train.optimizer.lr"] == 1e-5
        rivals = [o.intermediate_values.get(stopped, -1.0) for o in study.trials[: t.number]]
        assert t.intermediate_values[stopped] < max(rivals)  # behind an earlier trial there
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    states = {int(r.data.tags["optuna_trial"]): r.data.tags["trial_state"] for r in runs}
    assert {n for n, s in states.items() if s == "pruned"} == {t.number for t in pruned}


def _dominates(a: list[float], b: list[float], maximize: list[bool]) -> bool:
    better_or_equal = all(
        (x >= y) if m else (x <= y) for x, y, m in zip(a, b, maximize, strict=False)
    )
    return better_or_equal and any(x != y for x, y in zip(a, b, strict=False))


def test_multi_objective_study_writes_a_non_dominated_front(
    shipped_params, prepared, tmp_path, mlflow_store
):
    """objectives [params, latency]: a narrow and a wide network trade accuracy for size, so
    the front holds both; its points are mutually non-dominated, every other complete trial
    is dominated by one of them, and the front is in tune.json and in MLflow."""
    tune = {
        "n_trials": 5,
        "max_epochs": 2,
        "objectives": ["params", "latency"],
        "pruner": "none",
        "sampler": "tpe",
        "n_startup_trials": 3,
        "search_space": {
            "model.width": {"type": "categorical", "choices": [2, 32]},
            "train.optimizer.lr": {"type": "float", "low": 0.01, "high": 0.03, "log": True},
        },
    }
    metrics, study, parent = _tune(shipped_params, prepared, tmp_path, tune)
    front, maximize = metrics["pareto_front"], [True, False, False]
    names = ["val/acc", "params", "latency"]
    assert metrics["pareto_front_size"] == len(front) >= 2
    assert {row["trial"] for row in front} == {t.number for t in study.best_trials}
    by_number = {t.number: t for t in study.trials}
    for row in front:
        trial = by_number[row["trial"]]
        assert list(row["values"]) == names and list(row["values"].values()) == trial.values
        assert row["params"] == trial.params
        assert row["mlflow_run_id"] == trial.user_attrs["mlflow_run_id"]
    points = [list(row["values"].values()) for row in front]
    for i, a in enumerate(points):
        assert not any(_dominates(b, a, maximize) for j, b in enumerate(points) if j != i)
    on_front = {row["trial"] for row in front}
    for t in study.trials:
        if t.state == TrialState.COMPLETE and t.number not in on_front:
            assert any(_dominates(p, t.values, maximize) for p in points), t.values
    assert len({row["values"]["params"] for row in front}) >= 2  # narrow and wide
    assert metrics["best_trial"] == front[0]["trial"]  # best on accuracy among the front

    client = mlflow.MlflowClient()
    assert parent.data.tags["pareto_front_trials"] == ",".join(map(str, sorted(on_front)))
    exp_id, run_id = parent.info.experiment_id, parent.info.run_id
    table = client.load_table(exp_id, "pareto_front.json", run_ids=[run_id])
    assert sorted(table["trial"]) == sorted(on_front)
    assert {"val/acc", "params", "latency", "model.width", "mlflow_run_id"} <= set(table.columns)
    runs = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    tagged = {
        int(r.data.tags["optuna_trial"]) for r in runs if r.data.tags["pareto_front"] == "true"
    }
    assert tagged == on_front and len(runs) == 5
    assert (tmp_path / "tuning" / "plots" / "pareto_front.png").exists()


def test_trial_zero_is_the_current_params_and_the_study_plots_are_written(
    shipped_params, prepared, tmp_path, mlflow_store
):
    """A new study starts from params.yaml's values when they lie in the space, and the
    intermediate-values (what the pruner saw) and timeline views are among its plots."""
    tune = {
        "n_trials": 3,
        "max_epochs": 2,
        "pruner": "median",
        "sampler": "tpe",
        "n_startup_trials": 2,
        "search_space": {
            "train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 2e-2, "log": True},
            "model.width": {"type": "categorical", "choices": [4, 8]},
        },
    }
    metrics, study, _ = _tune(shipped_params, prepared, tmp_path, tune)
    first = study.trials[0]
    lr = shipped_params["train"]["optimizer"]["lr"]
    assert first.params == {"train.optimizer.lr": lr, "model.width": TINY["model"]["width"]}
    assert first.user_attrs["source"] == "params.yaml" and metrics["finished"] == 3
    assert all("source" not in t.user_attrs for t in study.trials[1:])
    plots = {p.name for p in (tmp_path / "tuning" / "plots").iterdir()}
    assert {"intermediate_values.png", "intermediate_values.html", "timeline.png"} <= plots


def test_current_point_is_refused_outside_the_space():
    from stages.common.search_space import current_point
    from stages.schema.tune import Distribution

    space = {
        "train.optimizer.name": Distribution(type="categorical", choices=["adamw", "nesterov"]),
        "train.optimizer.momentum": Distribution(
            type="float", low=0.8, high=0.99, when={"train.optimizer.name": ["nesterov"]}
        ),
        "model.width": Distribution(type="int", low=8, high=64, step=8),
    }
    values = {"train": {"optimizer": {"name": "adamw", "momentum": 0.5}}, "model": {"width": 32}}
    point, why = current_point(space, values)  # momentum is inactive for adamw: not checked
    assert point == {"train.optimizer.name": "adamw", "model.width": 32} and why == ""
    values["model"]["width"] = 30
    off_grid = "model.width = 30 is off the grid of step 8 from 8"
    assert current_point(space, values) == (None, off_grid)
    values["model"]["width"] = 128
    assert current_point(space, values)[1] == "model.width = 128 lies outside [8, 64]"
