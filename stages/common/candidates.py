"""The candidates: baselines, the trained network, compressed variants, each one loadable.

Every candidate becomes one `Candidate` with a `predict(X) -> (pred, proba)` over prepared
arrays, so evaluate's scoring and timing and the served model (stages/serving) run all of
them through the same code. A candidate whose file (or whose runtime) is missing is
skipped with a note, never a crash. `load_file` loads one file by kind, without the folder
layout: the served model uses it on its own copy.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stages.runtime.errors import UserError

log = logging.getLogger("reprolab.evaluate")

Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


@dataclass
class Candidate:
    name: str
    kind: str  # baseline | network | compressed
    files: list[Path]
    predict: Predict
    n_params: int
    run_id: str | None = None
    network: Any = field(default=None, repr=False)  # the torch module, for the registry
    params: dict[str, Any] = field(default_factory=dict)  # what it was built with


def discover(
    task: str,
    baselines_dir: Path,
    model_path: Path,
    compressed_dir: Path,
    only: str | None = None,
) -> tuple[list[Candidate], list[str]]:
    """All loadable candidates (or just the one named `only`), and a note for each skipped."""
    found: list[Candidate] = []
    notes: list[str] = []
    index_path = baselines_dir / "index.json"
    index: dict[str, Any] = {}
    if index_path.exists():
        index = json.loads(index_path.read_text())
        for name, entry in index["models"].items():
            path = baselines_dir / entry["file"]
            if only is not None and name != only:
                continue
            if path.exists():
                found.append(_baseline(name, path, task, entry))
            else:
                notes.append(f"baseline {name}: {path} missing, skipped")
    else:
        notes.append(f"baselines: {index_path} missing, skipped (run `dvc repro baselines`)")
    if only in (None, "network"):
        if model_path.exists():
            found.extend(_networks([("network", model_path)], task, "network", notes))
        else:
            notes.append(f"network: {model_path} missing, skipped (the train stage writes it)")
    variants = sorted(compressed_dir.glob("*")) if compressed_dir.is_dir() else []
    if not variants:
        notes.append(f"compressed: no files in {compressed_dir}, skipped (the compress stage)")
    for path in variants:
        if only is not None and path.stem != only:
            continue
        if path.suffix == ".onnx":
            found.extend(_onnx(path, task, notes))
        elif path.suffix == ".pt":
            found.extend(_networks([(path.stem, path)], task, "compressed", notes))
        elif path.is_file():
            notes.append(f"compressed {path.name}: unknown format {path.suffix!r}, skipped")
    notes += _fit_rows_mismatch(index, found)
    return found, notes


def load_file(path: Path, kind: str, task: str, threads: int = 1) -> Candidate:
    """One candidate from its file: `.skops` baseline, `.pt` network or `.onnx` model."""
    notes: list[str] = []
    if path.suffix == ".skops":
        return _baseline(path.stem, path, task, {})
    loaded = _onnx(path, task, notes, threads) if path.suffix == ".onnx" else None
    if path.suffix == ".pt":
        loaded = _networks([(path.stem, path)], task, kind, notes)
    if not loaded:
        raise UserError(f"{path}: cannot load a {kind} candidate ({'; '.join(notes) or path})")
    return loaded[0]


def _fit_rows_mismatch(index: dict[str, Any], found: list[Candidate]) -> list[str]:
    """A note when the network and the baselines were fit on different rows (train.fit_on)."""
    if not index:
        return []
    baselines = index.get("fit_on", "train")
    for c in found:
        if c.kind == "network":
            network = c.params.get("train", {}).get("fit_on", "train")
            if network != baselines:
                return [
                    f"not like for like: the network was fit on {network}, the baselines on "
                    f"{baselines} (train.fit_on changed in between); re-run `dvc repro`"
                ]
    return []


def _baseline(name: str, path: Path, task: str, entry: dict[str, Any]) -> Candidate:
    from stages.common.sizes import sklearn_parameters
    from stages.common.skops_files import load_trusted, scoring_pipeline

    pipe = scoring_pipeline(load_trusted(path))

    def predict(X):
        proba = pipe.predict_proba(X) if hasattr(pipe, "predict_proba") else None
        return pipe.predict(X), proba

    n_params = sklearn_parameters(pipe[-1])
    params = {"estimator": entry.get("estimator"), **entry.get("hyperparams", {})}
    return Candidate(
        name, "baseline", [path], predict, n_params, entry.get("mlflow_run_id"), params=params
    )


def _networks(items, task, kind, notes) -> list[Candidate]:
    try:
        from lightning_modules.serialization import load_network, predict
    except ImportError as exc:
        notes.append(f"{kind}: cannot import lightning_modules.serialization ({exc}), skipped")
        return []
    out = []
    for name, path in items:
        try:
            net, meta = load_network(path)
        except (ValueError, RuntimeError, OSError, KeyError) as exc:  # safe_load: ValueErrors
            why = str(exc).splitlines()[0][:200]
            raise UserError(f"{path}: cannot load the network ({why}); re-run its stage") from None
        n_params = sum(p.numel() for p in net.parameters())

        def run_net(X, net=net, meta=meta):
            return _from_scores(task, predict(net, meta, X, batch_size=512))

        run_id = meta.get("mlflow_run_id") if isinstance(meta, dict) else None
        params = meta.get("params", {}) if isinstance(meta, dict) else {}
        out.append(Candidate(name, kind, [path], run_net, n_params, run_id, net, params))
    return out


def _onnx(path: Path, task: str, notes: list[str], threads: int = 1) -> list[Candidate]:
    try:
        import onnxruntime  # noqa: F401  (the session below needs it)
    except ImportError as exc:
        notes.append(f"compressed {path.name}: onnxruntime unavailable ({exc}), skipped")
        return []
    from lightning_modules.quantize import session as ort_session
    from stages.common.sizes import onnx_parameters

    try:
        session = ort_session(path, threads=threads)
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        raise UserError(f"{path}: onnxruntime cannot load it: {exc}") from None
    inp = session.get_inputs()[0]
    per_row = quantizes_per_call(path)

    def predict(X):
        X = np.ascontiguousarray(X, dtype=np.float32)
        if per_row and len(X) > 1:
            out = np.concatenate(
                [session.run(None, {inp.name: X[i : i + 1]})[0] for i in range(len(X))]
            )
        else:
            out = session.run(None, {inp.name: X})[0]
        return _from_scores(task, out, logits_possible=True)

    return [Candidate(path.stem, "compressed", [path], predict, onnx_parameters(path))]


def quantizes_per_call(path: Path) -> bool:
    """True for a dynamic-INT8 graph: its DynamicQuantizeLinear nodes take one range over the
    whole input tensor, so a row's answer would shift with the rows sent beside it (a CLI
    chunk, an HTTP request). Such a graph is run one row at a time: every row gets the answer
    it gets alone, whatever the batching."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type == "DynamicQuantizeLinear" for node in graph.node)


def _from_scores(task: str, scores: np.ndarray, logits_possible: bool = False):
    """(pred, proba) from a network's output: probabilities (N, K) or values (N,)."""
    scores = np.asarray(scores, dtype=np.float64)
    if task == "regression":
        return scores.reshape(-1), None
    if scores.ndim == 2 and scores.shape[1] == 1:  # a binary network's one logit
        p = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        scores = np.stack([1.0 - p, p], axis=1)
        return scores.argmax(axis=1), scores
    rows_sum_to_one = np.allclose(scores.sum(axis=1), 1.0, atol=1e-3) and scores.min() >= 0
    if logits_possible and not rows_sum_to_one:
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores = e / e.sum(axis=1, keepdims=True)
    return scores.argmax(axis=1), scores
