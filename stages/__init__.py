"""reprolab pipeline stages: one module per DVC stage plus shared plumbing."""
