"""Typed schema of params.yaml, one module per section. `stages.config` assembles and loads it."""
