"""train stage: fit the `model:` network on the augmented (or prepared) training split."""
