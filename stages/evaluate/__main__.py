"""`python -m stages.evaluate`: the command `dvc.yaml` runs (see `stages.evaluate.stage`)."""

from stages.evaluate.stage import main

if __name__ == "__main__":
    raise SystemExit(main())
