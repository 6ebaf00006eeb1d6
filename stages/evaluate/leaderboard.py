"""Rank scored candidates by the headline metric and compare the top one with each other.

`leaderboard.json` is what `dvc metrics show/diff` reads: a nested mapping of numbers,
`candidates.<name>.<metric>`, plus the headline's CI bounds, each candidate's rank and
whether it is on the Pareto front of quality, latency and bytes (`pareto`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stages.common.scores import HEADLINES
from stages.evaluate import bootstrap

# headline -> (scale for display, unit)
UNITS = {
    "accuracy": (100.0, "pts"),
    "macro_f1": (100.0, "pts"),
    "r2": (1.0, "R²"),
    "rmse": (1.0, "RMSE"),
    "mae": (1.0, "MAE"),
}
LEADERBOARD_KEYS = (
    "accuracy", "macro_f1", "roc_auc", "log_loss", "ece", "rmse", "mae", "r2",
    "latency_ms_b1", "latency_ms_b256", "n_params", "bytes",
)  # fmt: skip


def ranked(scores: dict[str, dict[str, Any]], headline: str) -> list[str]:
    """Candidate names, best first (missing headline values last, ties by batch-1 latency)."""
    sign = 1.0 if HEADLINES[headline] else -1.0

    def key(name):  # ties go to the faster candidate
        v = scores[name].get(headline)
        missing = v is None or np.isnan(v)
        speed = scores[name].get("latency_ms_b1") or 0.0
        return (missing, -sign * (0.0 if missing else v), speed, name)

    return sorted(scores, key=key)


# minimized, next to the headline: what a candidate costs to serve and to ship
PARETO_COSTS = ("latency_ms_b1", "bytes")


def non_dominated(points: list[tuple[float | None, ...]], maximize: tuple[bool, ...]) -> list[bool]:
    """For each point, whether it is on the Pareto front.

    A point is dominated when another is at least as good on every axis and strictly better
    on one; equal points do not dominate each other. A point with a missing or NaN
    coordinate is never on the front and dominates nothing.
    """
    sign = np.where(maximize, -1.0, 1.0)  # every axis as "lower is better"
    costs = [
        sign * np.asarray(p, dtype=np.float64)
        if all(v is not None and np.isfinite(v) for v in p)
        else None
        for p in points
    ]
    others = [c for c in costs if c is not None]
    return [
        c is not None and not any(np.all(o <= c) and np.any(o < c) for o in others) for c in costs
    ]


def pareto(scores: dict[str, dict[str, Any]], headline: str) -> dict[str, bool]:
    """Candidate -> non-dominated on (headline, batch-1 latency, bytes on disk)."""
    names = list(scores)
    points = [(scores[n].get(headline), *(scores[n].get(k) for k in PARETO_COSTS)) for n in names]
    flags = non_dominated(points, (HEADLINES[headline], *(False for _ in PARETO_COSTS)))
    return dict(zip(names, flags, strict=True))


def compare(
    best: str,
    others: list[str],
    y: np.ndarray,
    preds: dict[str, np.ndarray],
    headline: str,
    resamples: int,
    seed: int,
    confidence: float,
    n_classes: int | None,
) -> list[dict[str, Any]]:
    """Paired bootstrap of `best` minus each other, oriented so positive = best is better."""
    sign = 1.0 if HEADLINES[headline] else -1.0
    out = []
    for other in others:
        diff, low, high = bootstrap.paired_difference(
            headline, y, preds[best], preds[other], resamples, seed, confidence, n_classes
        )
        diff, low, high = (sign * diff, *sorted((sign * low, sign * high)))
        out.append(
            {
                "best": best,
                "other": other,
                "difference": diff,
                "ci_low": low,
                "ci_high": high,
                "distinguishable": bool(low > 0 or high < 0),
                "text": describe(best, other, diff, low, high, headline),
            }
        )
    return out


def describe(best: str, other: str, diff: float, low: float, high: float, headline: str) -> str:
    """'better than X by 1.2 pts [0.4, 2.1]' or 'not distinguishable from X (...)'."""
    scale, unit = UNITS[headline]
    span = f"{diff * scale:.{_digits(unit)}f} {unit} [{low * scale:.{_digits(unit)}f}, "
    span += f"{high * scale:.{_digits(unit)}f}]"
    if low > 0:
        return f"{best} is better than {other} by {span}"
    if high < 0:
        return f"{best} is worse than {other} by {span}"
    return f"{best} is not distinguishable from {other} (difference {span})"


def _digits(unit: str) -> int:
    return 1 if unit == "pts" else 3


def leaderboard_json(
    task: str,
    headline: str,
    order: list[str],
    scores: dict[str, dict[str, Any]],
    cis: dict[str, tuple[float, float]],
    confidence: float,
) -> dict[str, Any]:
    candidates, front = {}, pareto(scores, headline)
    for rank, name in enumerate(order, 1):
        entry = {"rank": rank}
        entry.update({k: scores[name][k] for k in LEADERBOARD_KEYS if k in scores[name]})
        entry["pareto"] = front[name]
        low, high = cis.get(name, (None, None))
        entry[f"{headline}_ci_low"], entry[f"{headline}_ci_high"] = low, high
        candidates[name] = entry
    return {
        "task": task,
        "headline": headline,
        "confidence": confidence,
        "best": order[0] if order else None,
        "candidates": candidates,
    }
