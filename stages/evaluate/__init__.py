"""evaluate stage: score every candidate on the untouched test split, with CIs, cost and plots."""
