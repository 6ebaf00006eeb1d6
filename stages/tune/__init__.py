"""Optuna study machinery for the tune stage: storage, samplers, budget, tracking, plots."""
