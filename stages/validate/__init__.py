"""validate stage: every params section checked before any stage runs (DVC keeps outputs)."""
