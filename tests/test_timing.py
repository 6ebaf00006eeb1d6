"""The one latency timer: warm-up calls are untimed, repeats and the budget bound the rest."""

from __future__ import annotations

import time

from lightning_modules.timing import call_seconds


def test_warmup_is_untimed_and_repeats_bound_the_calls():
    calls = []
    times = call_seconds(lambda: calls.append(1), warmup=3, repeats=5)
    assert len(calls) == 8 and len(times) == 5 and all(t >= 0 for t in times)


def test_budget_stops_early_but_keeps_the_minimum():
    times = call_seconds(lambda: time.sleep(0.02), warmup=0, repeats=100, budget_s=0.05)
    assert 1 <= len(times) < 10
    slow = call_seconds(lambda: time.sleep(0.03), warmup=0, repeats=100, budget_s=0.0, min_calls=2)
    assert len(slow) == 2 and min(slow) >= 0.025
