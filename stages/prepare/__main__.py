"""`python -m stages.prepare`: the command `dvc.yaml` runs (see `stages.prepare.stage`)."""

from stages.prepare.stage import main

if __name__ == "__main__":
    raise SystemExit(main())
