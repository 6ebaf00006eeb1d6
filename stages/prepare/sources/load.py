"""`data.source` -> the reader for its kind (built-in, image folder, .npz, table)."""

from __future__ import annotations

from pathlib import Path

from stages.prepare.sources.raw import RawData
from stages.schema.data import DataParams


def load_source(data: DataParams, root: Path, seed: int) -> RawData:
    """Read the configured source. Raises DataError naming the file/row on bad input."""
    if data.is_builtin:
        from stages.prepare.sources.builtin import load_builtin

        return load_builtin(data, seed)
    path = (root / data.source).resolve()
    if path.is_dir():
        from stages.prepare.sources.images import load_image_folder

        return load_image_folder(path, data)
    if path.suffix.lower() == ".npz":
        from stages.prepare.sources.arrays import load_npz_source

        return load_npz_source(path, data)
    from stages.prepare.sources.table import load_table

    return load_table(path, data, seed)
