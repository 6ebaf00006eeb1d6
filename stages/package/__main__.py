"""`python -m stages.package`: the command `dvc.yaml` runs (see `stages.package.stage`)."""

from stages.package.stage import main

if __name__ == "__main__":
    raise SystemExit(main())
