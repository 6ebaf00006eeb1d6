"""prepare stage: read `data.source`, split, fit preprocessing on train, write the splits."""
