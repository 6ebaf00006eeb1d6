"""`python -m stages.predict` (see `stages.predict.command`)."""

from stages.predict.command import main

if __name__ == "__main__":
    raise SystemExit(main())
