"""`python -m stages.baselines`: the command `dvc.yaml` runs (see `stages.baselines.stage`)."""

from stages.baselines.stage import main

if __name__ == "__main__":
    raise SystemExit(main())
