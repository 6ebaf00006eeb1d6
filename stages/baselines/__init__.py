"""baselines stage: fit the scikit-learn models listed in `baselines.models`, score them on val."""
