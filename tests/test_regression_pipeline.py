"""Regression from prepare to package in a repo copy: real dvc, MLflow and every stage.

Its own file (not test_serve's) so pytest-xdist can run it beside test_serve's module
pipeline: `--dist loadfile` keeps a file's tests on one worker.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import copy_repo, pipeline_env, run_dvc, write_params
from tests.test_serve import TINY, _candidate_answer, _raw_test, _same

pytestmark = pytest.mark.integration


PRICES = "data/raw/prices.csv"


def _price_table(path: Path, n: int = 1500) -> None:
    """A learnable table with a price in the thousands: numbers, categoricals and blanks."""
    gen = np.random.default_rng(0)
    area = gen.uniform(40, 200, n)
    rooms = gen.integers(1, 6, n)
    zone = gen.choice(["centre", "north", "south"], n)
    condition = gen.choice(["fair", "good", "new"], n)
    price = 30 * area + 400 * rooms + gen.normal(0, 300, n)
    price += pd.Series(zone).map({"centre": 2500, "north": 0, "south": 1000}).to_numpy()
    price += pd.Series(condition).map({"fair": 0, "good": 500, "new": 1500}).to_numpy()
    area[::41] = np.nan
    frame = {"area": area.round(1), "rooms": rooms, "zone": zone, "condition": condition}
    pd.DataFrame({**frame, "price": price.round(0)}).to_csv(path, index=False)


def test_regression_goes_end_to_end_and_answers_in_the_target_units(tmp_path):
    """Regression from prepare to package: tuned on val/rmse, every technique compressed;
    the network and every compressed variant on the leaderboard are far above the trivial
    predictor (R² > 0.5), and the served model answers raw rows in the target's units."""
    repo = copy_repo(tmp_path / "repo")
    env = pipeline_env(tmp_path)
    _price_table(repo / PRICES)
    data = {"source": PRICES, "target": "price", "task": "regression"}
    compress = {
        "lr": 0.005,
        "unstructured": {"sparsities": [0.5, 0.8], "finetune_epochs": 1},
        "structured": {"finetune_epochs": 3},
        "distill": {"epochs": 15},
        "quantize": {"static": False},
        "latency": {"repeats": 2, "budget_s": 0.05},
    }
    tune = {"enabled": True, "n_trials": 2, "max_epochs": 2, "n_startup_trials": 2}
    train = {"max_epochs": 8, "batch_size": 32, "threads": 1, "ema": {"enabled": False}}
    overrides = {"data": data, "baselines": {"models": ["linear", "ridge"]}, "tune": tune}
    write_params(repo, {**TINY, **overrides, "train": train, "compress": compress})
    run_dvc(repo, env, "repro", "package")
    import mlflow

    tuned = json.loads((repo / "metrics" / "tune.json").read_text())
    assert (tuned["metric"], tuned["direction"]) == ("val/rmse", "minimize"), tuned
    variants = json.loads((repo / "metrics" / "compression.json").read_text())
    assert {r["status"] for r in variants.values()} == {"ok"}, variants
    board = json.loads((repo / "metrics" / "leaderboard.json").read_text())
    expected = {"network", *variants} - {"original"}
    assert expected <= set(board["candidates"]), board["candidates"].keys()
    r2 = {name: board["candidates"][name]["r2"] for name in expected}
    assert min(r2.values()) > 0.5, r2

    planned, X = _raw_test(repo)
    rows = pd.read_csv(repo / PRICES).iloc[planned.parts["test"]]
    answer = mlflow.pyfunc.load_model(str(repo / "models" / "serving")).predict(rows)
    _same(answer, _candidate_answer(repo, board["best"], X), None)
    assert abs(answer["prediction"].mean() - rows["price"].mean()) < rows["price"].std()
