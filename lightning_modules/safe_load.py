"""Load a torch file (checkpoint, `model.pt`) safely, telling hostile from broken files.

Every load goes through `torch.load(weights_only=True)`: the unpickler only builds tensors
and plain containers, so a planted payload (`__reduce__` calling `os.system`...) is never
run. This module turns torch's low-level errors into two clear ones naming the file:

- `UnsafeFileError`: the file holds objects outside the weights-only allowlist. It is
  refused, never retried with `weights_only=False`.
- `CorruptFileError`: truncated, empty, or not a torch file at all (e.g. a half-written
  checkpoint after a kill or a full disk).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any


class UnsafeFileError(ValueError):
    """The file would run code or build arbitrary objects when unpickled."""


class CorruptFileError(ValueError):
    """The file is truncated or not a torch file."""


def load_checked(path: str | Path) -> Any:
    """`torch.load(path, weights_only=True)` on CPU, with errors that name the file."""
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            detail = _first_line(exc, "GLOBAL")
            raise UnsafeFileError(
                f"{path}: refused to load: it holds objects outside torch's weights-only "
                f"allowlist ({detail}); only load files this pipeline wrote, and never with "
                f"weights_only=False"
            ) from None
        raise CorruptFileError(f"{path}: not a readable torch file ({_first_line(exc)})") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (
        RuntimeError,
        EOFError,
        OSError,  # e.g. EINVAL seeking in a torn zip
        zipfile.BadZipFile,
        ValueError,
        KeyError,
        IndexError,
    ) as exc:
        raise CorruptFileError(
            f"{path}: truncated or corrupt ({_first_line(exc)}); "
            f"{path.stat().st_size if path.exists() else 0} bytes on disk"
        ) from None


def _first_line(exc: BaseException, containing: str = "") -> str:
    for line in str(exc).splitlines():
        if line.strip() and containing in line:
            return line.strip().rstrip(".")[:160]
    return type(exc).__name__
