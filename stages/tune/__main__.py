"""`python -m stages.tune`: the command `dvc.yaml` runs (see `stages.tune.stage`)."""

from stages.tune.stage import main

if __name__ == "__main__":
    raise SystemExit(main())
