"""Predictions as CSV: to a file (written whole or not at all) or to stdout."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from stages.runtime.errors import UserError


@contextlib.contextmanager
def output(target: str) -> Iterator[TextIO]:
    """A text stream for `target`; a file appears only if everything was written."""
    if target == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(target)
    if path.is_dir():
        raise UserError(f"--out {target} is a folder; expected a CSV file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"--out {target}: cannot write there: {exc}") from None
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
