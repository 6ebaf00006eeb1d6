"""The MLflow pyfunc: `ReprolabModel` loads the candidate and preprocessor, then predicts.

Loading trusts no pickle: the candidate is a `.pt` file loaded with `weights_only=True`, an
ONNX file run by ONNX Runtime (with its `disabled_optimizers` metadata), or a `.skops`
file loaded with scikit-learn types only; a table's preprocessor is a `.skops` file too.
The model itself is MLflow "model from code" (this file, run at load), not a pickled object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from stages.serving.spec import ServingSpec


class ReprolabModel(mlflow.pyfunc.PythonModel):
    """Raw input -> prepared arrays -> the candidate -> labels/probabilities/values."""

    def load_context(self, context) -> None:
        self.load(context.artifacts)

    def load(self, artifacts: dict[str, str]) -> ReprolabModel:
        """Load from artifact paths ({"spec", "candidate", ["preprocessor"]})."""
        from stages.common.candidates import load_file
        from stages.common.skops_files import load_trusted

        self.spec = ServingSpec.read(artifacts["spec"])
        task = self.spec.task
        self.candidate = load_file(Path(artifacts["candidate"]), self.spec.kind, task, threads=0)
        pre = artifacts.get("preprocessor")
        self.preprocessor = load_trusted(pre) if pre else None
        return self

    def prepared(self, model_input: Any):
        from stages.serving.inputs import to_arrays

        return to_arrays(self.spec, model_input, self.preprocessor)

    # the DataFrame hint is one MLflow infers no schema from: the signature, set explicitly
    # at packaging, stays the truth, and MLflow does not warn about a missing hint at every
    # load. Arrays and lists arrive as MLflow converts them for that signature.
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None):
        from stages.serving.outputs import answer

        pred, proba = self.candidate.predict(self.prepared(model_input))
        return answer(self.spec, pred, proba)


# MLflow "model from code": loading the served model runs this file; nothing is unpickled
mlflow.models.set_model(ReprolabModel())
