"""File I/O of the pipeline: atomic outputs (temp sibling, then rename) and schema reads
(splits: stages.common.splits).

A crash (even kill -9) leaves either the old complete output or nothing at the target
path, never a half-written file. An unwritable or full disk is reported naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from stages.runtime.errors import UserError
from stages.runtime.signals import raise_if_received


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _os_error(path: Path, exc: OSError) -> UserError:
    reason = {
        errno.ENOSPC: "no space left on device",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EDQUOT: "disk quota exceeded",
    }
    why = reason.get(exc.errno, exc.strerror or str(exc))
    return UserError(f"cannot write output {path}: {why}; earlier outputs were left untouched")


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a fresh temp directory; on success it replaces `target` in one rename."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        tmp.chmod(0o777 & ~_umask())
    except OSError as exc:
        raise _os_error(target, exc) from None
    try:
        yield tmp
        raise_if_received()  # interrupted while writing: the old output stays
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _os_error(target, exc) from None
    except UserError as exc:  # a write inside failed: name the real output, not the temp dir
        shutil.rmtree(tmp, ignore_errors=True)
        raise type(exc)(str(exc).replace(str(tmp), str(target))) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `target`; on success it is fsynced and renamed onto it."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.tmp-", dir=target.parent, suffix=target.suffix
        )
        os.close(fd)
        os.chmod(name, 0o666 & ~_umask())
    except OSError as exc:
        raise _os_error(target, exc) from None
    tmp = Path(name)
    try:
        yield tmp
        raise_if_received()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _os_error(target, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


# what every stage after prepare reads from schema.json
SCHEMA_KEYS = ("dataset", "fingerprint", "task", "modality", "input_shape")


def read_schema(prepared: Path) -> dict[str, Any]:
    """The `schema.json` prepare wrote into `prepared`, refused by name when it is missing,
    not JSON, or lacks a key the stages read (a folder not written by prepare)."""
    path = prepared / "schema.json"
    if not path.exists():
        raise UserError(f"missing {path}; run `dvc repro prepare` first")
    try:
        schema = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not JSON ({exc}); re-run `dvc repro prepare`") from None
    if not isinstance(schema, dict):
        raise UserError(f"{path}: holds a {type(schema).__name__}, expected prepare's object")
    missing = [k for k in SCHEMA_KEYS if k not in schema]
    if missing:
        raise UserError(
            f"{path}: no {', '.join(missing)} (expected {', '.join(SCHEMA_KEYS)}, as prepare "
            "writes them); re-run `dvc repro prepare`"
        )
    return schema
