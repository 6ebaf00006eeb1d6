"""`python -m stages.validate`: the command `dvc.yaml` runs (see `stages.validate.stage`)."""

from stages.validate.stage import main

if __name__ == "__main__":
    raise SystemExit(main())
