"""`python -m stages.augment`: the command `dvc.yaml` runs (see `stages.augment.stage`)."""

from stages.augment.stage import main

if __name__ == "__main__":
    raise SystemExit(main())
