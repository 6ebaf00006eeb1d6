"""Write the served model: an MLflow pyfunc folder (model from code, no pickle).

The folder holds the candidate's own file, a table's fitted preprocessor, serving.json,
the runtime's code (stages/, lightning_modules/; .py files only) and pinned requirements.
Its signature and input example describe the raw input and the real output.
"""

from __future__ import annotations

import functools
import importlib.metadata
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.common import splits
from stages.common.candidates import Candidate
from stages.common.code_closure import REPO, closure, import_graph, module_name
from stages.serving import model as runtime
from stages.serving.spec import FILE, ServingSpec

MODEL_CODE = Path(runtime.__file__)
COMMON = ("mlflow", "numpy", "pandas", "scikit-learn", "skops", "pillow")
BY_FORMAT = {".pt": ("torch",), ".onnx": ("onnx", "onnxruntime"), ".skops": ()}


def requirements(candidate_file: Path) -> list[str]:
    """Exact versions of what the runtime imports, from this environment (no inference)."""
    names = COMMON + BY_FORMAT[candidate_file.suffix]
    return [f"{n}=={importlib.metadata.version(n)}" for n in names]


def raw_example(spec: ServingSpec, prepared: Path) -> Any:
    """A few raw training inputs: the served model's input example."""
    if spec.input == "table":
        ex = spec.prep["example"]
        frame = pd.DataFrame(ex["data"], columns=ex["columns"])
        return typed_frame(frame, spec.prep["column_types"])
    if spec.input == "files":
        return pd.DataFrame({"image": [(prepared / spec.prep["example"]).read_bytes()]})
    X = splits.head(prepared / "train", 3).astype(np.float64)
    if spec.prep["kind"] == "image":  # undo the scaling: the model takes raw values
        return (X / spec.prep["scale"]).astype(np.float32)
    mean, scale = np.asarray(spec.prep["mean"]), np.asarray(spec.prep["scale"])
    return (X * scale + mean).astype(np.float32)


def typed_frame(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Columns in their signature dtypes (JSON examples lose them)."""
    out = {}
    for col, kind in types.items():
        s = frame[col]
        if kind == "long":
            out[col] = pd.to_numeric(s).astype(np.int64)
        elif kind == "double":
            out[col] = pd.to_numeric(s, errors="coerce").astype(np.float64)
        elif kind == "boolean":
            out[col] = s.astype(bool)
        elif kind == "datetime":
            out[col] = pd.to_datetime(s)
        else:
            out[col] = s.astype(object).where(s.notna(), None)
    return pd.DataFrame(out)


def signature(spec: ServingSpec, output: pd.DataFrame):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    if spec.input == "table":
        inputs = Schema([ColSpec(t, c) for c, t in spec.prep["column_types"].items()])
    elif spec.input == "files":
        inputs = Schema([ColSpec("binary", "image")])
    else:
        inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *spec.input_shape))])
    outputs = Schema([ColSpec("string" if c == "label" else "double", c) for c in output.columns])
    return ModelSignature(inputs, outputs)


@contextmanager
def model_kwargs(
    spec: ServingSpec, candidate: Candidate, prepared: Path, output: pd.DataFrame
) -> Iterator[dict[str, Any]]:
    """The arguments `mlflow.pyfunc.save_model` / `log_model` take, files staged in a tmp dir."""
    with tempfile.TemporaryDirectory(prefix="reprolab-package-") as tmp:
        stage = Path(tmp)
        [file] = candidate.files
        artifacts = {"spec": str(spec.write(stage)), "candidate": str(file)}
        if spec.input == "table":
            artifacts["preprocessor"] = str(prepared / "preprocessor.skops")
        code = _copy_runtime(stage / "code")
        yield {
            "python_model": str(MODEL_CODE),
            "artifacts": artifacts,
            "code_paths": code,
            "signature": signature(spec, output),
            "input_example": raw_example(spec, prepared),
            "pip_requirements": requirements(file),
            "metadata": {
                "reprolab": {
                    "candidate": spec.candidate,
                    "kind": spec.kind,
                    "task": spec.task,
                    "input": spec.input,
                    "extra_columns": spec.extra_columns,
                    "serving_spec": FILE,
                }
            },
        }


@functools.cache
def _runtime_files() -> tuple[str, ...]:
    """The served model's own modules (its import closure): parsed once per process, not
    once per model written (the stage saves the folder and logs the model, 0.8 s each)."""
    return tuple(sorted(closure(module_name(MODEL_CODE), import_graph(), skip=())))


def _copy_runtime(dest: Path) -> list[str]:
    """The served model's own modules, copied; returns the roots."""
    for rel in _runtime_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    return [str(p) for p in sorted(dest.iterdir())]
