"""The splits a stage reads, as MLflow dataset inputs (the Dataset column of the runs).

Each split folder (stages.common.splits) is a metadata-only dataset: shapes and dtypes come
from its `split.json` (no array is read), the digest is DVC's: the md5 of its files' md5s
in the `.dir` manifest of the DVC output holding it (the output's own hash when the DVC
cache has no manifest; a hash of its shapes outside DVC), and the context is train / val /
test. One `log_inputs` call per stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.data.dataset import Dataset
from mlflow.data.schema import TensorDatasetSchema
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.types import Schema, TensorSpec

from stages.common import splits as split_store
from stages.runtime.errors import UserError
from stages.runtime.tracking import lock_outs

log = logging.getLogger("reprolab.tracking")

Arrays = dict[str, tuple[tuple[int, ...], np.dtype]]


class SplitFile(Dataset):
    """One split file (`X` features, `y` targets) described by its array headers."""

    def __init__(self, path: Path, name: str, digest: str | None, arrays: Arrays):
        self._arrays = arrays
        super().__init__(LocalArtifactDatasetSource(str(path)), name=name, digest=digest)

    def _compute_digest(self) -> str:
        text = json.dumps([self.source.uri, self.profile])
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def profile(self) -> dict[str, Any]:
        shapes = {f"{key}_shape": list(shape) for key, (shape, _) in self._arrays.items()}
        return {"num_rows": self._arrays["X"][0][0], **shapes}

    @property
    def schema(self) -> TensorDatasetSchema:
        spec = {
            key: Schema([TensorSpec(dtype, (-1, *shape[1:]), name=key)])
            for key, (shape, dtype) in self._arrays.items()
        }
        return TensorDatasetSchema(features=spec["X"], targets=spec.get("y"))

    def to_dict(self) -> dict[str, str]:
        return super().to_dict() | {
            "schema": json.dumps(self.schema.to_dict()),
            "profile": json.dumps(self.profile),
        }


def dvc_file_hash(path: Path, lock_path: Path = Path("dvc.lock")) -> str | None:
    """DVC's md5 of `path`: a DVC output itself, or a file or folder directly inside one
    (a folder: the md5 of its files' sorted "relpath md5" lines)."""
    outs = lock_outs(lock_path)
    here = os.path.normpath(path)
    if here in outs:
        return outs[here]
    folder, name = os.path.split(here)
    digest = outs.get(folder)
    if not digest:
        return None
    manifest = lock_path.parent / ".dvc/cache/files/md5" / digest[:2] / digest[2:]
    try:
        entries = json.loads(manifest.read_text())
    except (OSError, ValueError):  # cache moved or garbage-collected: the folder's hash
        return digest
    inside = sorted(
        f"{e['relpath']} {e['md5']}" for e in entries if e.get("relpath", "").startswith(name + "/")
    )
    if inside:
        return hashlib.md5("\n".join(inside).encode()).hexdigest()
    return next((e["md5"] for e in entries if e.get("relpath") == name), digest)


def log_splits(
    dataset: str, splits: Mapping[str, Sequence[Path]], lock_path: Path = Path("dvc.lock")
) -> int:
    """Log `{context: [split files]}` as inputs of the active run. Returns how many.

    Args:
        dataset: the dataset name (schema.json's `dataset`); each input is named
            `<dataset>/<folder>/<split>`, e.g. `digits/prepared/test`.
        splits: context (train / val / test) -> the split folders read in it. A file read in
            two contexts is one input (`train+val`: val rows in the fit); files that do not
            exist (an optional split) are left out.
        lock_path: dvc.lock, for the digests.
    """
    contexts: dict[Path, list[str]] = {}
    for context, files in splits.items():
        for path in map(Path, files):
            contexts.setdefault(path, []).append(context)
    datasets = []
    for path in [p for p in contexts if p.exists()]:
        try:
            arrays = split_store.arrays_of(path)
        except (OSError, KeyError, ValueError, UserError) as exc:
            log.warning("%s: not logged as an MLflow dataset input: %s", path, exc)
            continue
        if "X" in arrays:
            name = f"{dataset}/{path.parent.name}/{path.name}"
            datasets.append((SplitFile(path, name, dvc_file_hash(path, lock_path), arrays), path))
    if datasets:
        mlflow.log_inputs(
            [d for d, _ in datasets],
            contexts=["+".join(contexts[p]) for _, p in datasets],
            tags_list=[None] * len(datasets),
        )
    return len(datasets)
