"""Model size, counted the same way for every candidate: stored numbers and bytes on disk.

For a network the count is its parameters. For a fitted scikit-learn model it is every
number the model keeps to predict (coefficients, support vectors, tree nodes, a kNN's
stored training rows), so a 200-tree forest and a small CNN can be compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

NODE_FIELDS = 4  # split feature, threshold, left and right child per tree node


def sklearn_parameters(est: Any, _seen: set[int] | None = None) -> int:
    """Numbers stored by a fitted estimator (recursing into ensembles and pipelines)."""
    seen = _seen if _seen is not None else set()
    if id(est) in seen:
        return 0
    seen.add(id(est))
    total = 0
    for key, value in vars(est).items():
        if not key.endswith("_") and not key.startswith("_"):
            continue  # constructor arguments, not fitted state
        total += _count(value, seen)
    return total


def _count(value: Any, seen: set[int]) -> int:
    if isinstance(value, np.ndarray):
        if value.dtype.names:  # structured array, e.g. HistGradientBoosting's nodes
            return value.size * len(value.dtype.names)
        return value.size if value.dtype.kind in "biuf" else 0
    if isinstance(value, list | tuple):
        return sum(_count(v, seen) for v in value)
    tree = getattr(value, "node_count", None)
    if tree is not None and hasattr(value, "value"):  # sklearn.tree._tree.Tree
        return int(value.node_count) * NODE_FIELDS + int(np.asarray(value.value).size)
    if hasattr(value, "nodes") and isinstance(value.nodes, np.ndarray):  # TreePredictor
        return _count(value.nodes, seen)
    if hasattr(value, "get_params") or hasattr(value, "__dict__") and hasattr(value, "fit"):
        return sklearn_parameters(value, seen)
    return 0


def onnx_parameters(path: str | Path) -> int:
    """Numbers in an ONNX graph's initializers (its weights)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(sum(np.prod(t.dims, dtype=np.int64) for t in model.graph.initializer))


def bytes_on_disk(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        if path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        elif path.exists():
            total += path.stat().st_size
    return total
