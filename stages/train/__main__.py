"""`python -m stages.train`: the command `dvc.yaml` runs (see `stages.train.stage`)."""

from stages.train.stage import main

if __name__ == "__main__":
    raise SystemExit(main())
