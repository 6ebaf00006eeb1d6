"""Readers for `data.source`: built-in datasets, tables, image folders and .npz arrays.

Each returns a `RawData`; none of them splits or fits anything (that is `stages.prepare`).
"""

from __future__ import annotations

from pathlib import Path

from stages.schema.data import DataParams
from stages.sources.raw import RawData


def load_source(data: DataParams, root: Path, seed: int) -> RawData:
    """Read the configured source. Raises DataError naming the file/row on bad input."""
    if data.is_builtin:
        from stages.sources.builtin import load_builtin

        return load_builtin(data, seed)
    path = (root / data.source).resolve()
    if path.is_dir():
        from stages.sources.images import load_image_folder

        return load_image_folder(path, data)
    if path.suffix.lower() == ".npz":
        from stages.sources.arrays import load_npz_source

        return load_npz_source(path, data)
    from stages.sources.table import load_table

    return load_table(path, data)


__all__ = ["RawData", "load_source"]
