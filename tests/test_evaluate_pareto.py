"""evaluate's Pareto view: which candidates no other beats on quality, latency and bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stages.evaluate import leaderboard, plots

MAX_MIN_MIN = (True, False, False)  # accuracy up; latency, bytes down


def test_dominance_on_every_axis_strictly_on_one():
    points = [
        (0.90, 2.0, 100),  # on the front: the most accurate
        (0.80, 1.0, 100),  # on the front: the fastest
        (0.80, 1.0, 100),  # the same point again: equal points do not dominate each other
        (0.80, 1.0, 120),  # dominated: equal quality and latency, more bytes
        (0.85, 2.5, 50),  # on the front: the smallest
        (0.70, 3.0, 200),  # dominated by every other
    ]
    assert leaderboard.non_dominated(points, MAX_MIN_MIN) == [True, True, True, False, True, False]


def test_a_minimized_headline_flips_the_quality_axis():
    points = [(0.5, 1.0, 10), (0.4, 1.0, 10)]  # rmse: 0.4 is better
    assert leaderboard.non_dominated(points, (False, False, False)) == [False, True]
    assert leaderboard.non_dominated(points, MAX_MIN_MIN) == [True, False]


def test_a_candidate_missing_a_value_is_off_the_front_and_dominates_nothing():
    points = [(0.9, None, 10), (math.nan, 0.1, 1), (0.5, 5.0, 100)]
    assert leaderboard.non_dominated(points, MAX_MIN_MIN) == [False, False, True]
    assert leaderboard.non_dominated([], MAX_MIN_MIN) == []


@pytest.mark.parametrize("seed", range(5))
def test_the_front_is_mutually_non_dominated_and_dominates_the_rest(seed):
    rng = np.random.default_rng(seed)
    points = [tuple(p) for p in rng.integers(0, 4, size=(30, 3)).astype(float)]  # many ties
    flags = leaderboard.non_dominated(points, MAX_MIN_MIN)

    def dominates(a, b):
        a, b = (-a[0], a[1], a[2]), (-b[0], b[1], b[2])
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    front = [p for p, on in zip(points, flags, strict=True) if on]
    assert front
    for p, on in zip(points, flags, strict=True):
        beaten = any(dominates(q, p) for q in points)
        assert on == (not beaten)
        assert on or any(dominates(q, p) for q in front)  # the front alone beats the rest


def _scores():
    return {
        "big": {"accuracy": 0.95, "latency_ms_b1": 3.0, "bytes": 9000},
        "small": {"accuracy": 0.90, "latency_ms_b1": 0.5, "bytes": 800},
        "slow_small": {"accuracy": 0.90, "latency_ms_b1": 0.9, "bytes": 800},
        "int8": {"accuracy": 0.93, "latency_ms_b1": 1.0, "bytes": 700},
    }


def test_the_leaderboard_marks_the_front_and_the_plot_draws_it(tmp_path, monkeypatch):
    scores = _scores()
    order = leaderboard.ranked(scores, "accuracy")
    board = leaderboard.leaderboard_json("classification", "accuracy", order, scores, {}, 0.95)
    flags = {name: row["pareto"] for name, row in board["candidates"].items()}
    assert flags == {"big": True, "int8": True, "small": True, "slow_small": False}
    inverted = {n: {**s, "accuracy": None} for n, s in scores.items()}
    assert not any(leaderboard.pareto(inverted, "accuracy").values())  # no quality, no front

    drawn = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.update(fig=fig))
    plots._pareto(tmp_path / "pareto.png", board["candidates"], "accuracy")
    (ax,) = drawn["fig"].axes
    filled = set()
    for points in ax.collections:
        (x, y), faces = points.get_offsets()[0], points.get_facecolors()
        name = next(n for n, r in board["candidates"].items() if r["latency_ms_b1"] == x)
        assert board["candidates"][name]["accuracy"] == y
        if len(faces) and faces[0][3] > 0:  # facecolors "none": an empty array
            filled.add(name)
    assert filled == {n for n, on in flags.items() if on}  # hollow = dominated
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"non-dominated", "dominated"}
