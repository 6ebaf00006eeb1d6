"""`python -m stages.compress`: the command `dvc.yaml` runs (see `stages.compress.stage`)."""

from stages.compress.stage import main

if __name__ == "__main__":
    raise SystemExit(main())
