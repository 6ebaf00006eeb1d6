"""package stage: the leaderboard's winner, with its preprocessing, as one MLflow model."""
