"""Run plumbing that changes no result: CLI, exit codes, MLflow tracking, retries."""
