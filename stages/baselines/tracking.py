"""MLflow logging of the baselines stage: one nested run per model, logged with a signature."""

from __future__ import annotations

from typing import Any

import numpy as np


def jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, int | float | str | bool | None) else str(v)
        for k, v in params.items()
    }


def baseline_logger():
    """The per-model hook of the baselines stage: one nested run, the model with signature."""

    def log_one(
        name: str, pipe: Any, result: dict[str, Any], X_val: np.ndarray, types: list[str]
    ) -> str:
        import mlflow
        from mlflow.models import infer_signature

        from stages.common.skops_files import scoring_pipeline
        from stages.runtime import tracking

        scorer = scoring_pipeline(pipe)
        example = X_val[:5]
        with mlflow.start_run(run_name=name, nested=True, tags={"baseline": name}) as child:
            hyper = jsonable(pipe[-1].get_params(deep=False))
            tracking.log_params({"model": name, "fit_rows": result.get("fit_rows"), **hyper})
            mlflow.log_metrics({k: v for k, v in result.items() if v is not None})
            mlflow.sklearn.log_model(
                scorer,
                name="model",
                signature=infer_signature(example, scorer.predict(example)),
                input_example=example,
                serialization_format="skops",
                skops_trusted_types=types,  # the whole pipeline's: a superset of the scorer's
                pip_requirements=["scikit-learn", "skops", "numpy"],
            )
            return child.info.run_id

    return log_one
