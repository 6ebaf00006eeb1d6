"""Load a served model: a `models/serving` folder or a `models:/<name>@<alias>` URI."""

from __future__ import annotations

from pathlib import Path

from stages.runtime.errors import UserError


def load(uri: str):
    """(pyfunc model, our ReprolabModel inside it); refuses what is not a reprolab model."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not uri.startswith(("models:/", "runs:/")) and "://" not in uri:
        folder = Path(uri)
        if not folder.exists():
            raise UserError(f"--model {uri}: no such folder; run `dvc repro package` first")
        if not (folder / "MLmodel").exists():
            raise UserError(
                f"--model {uri}: not an MLflow model folder (no MLmodel file); expected the "
                "package stage's output (models/serving) or a models:/<name>@<alias> URI"
            )
    try:
        model = mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise UserError(f"--model {uri}: {exc.message.splitlines()[0]}") from None
    except OSError as exc:
        raise UserError(f"--model {uri}: cannot read it: {exc}") from None
    if "reprolab" not in (model.metadata.metadata or {}):
        raise UserError(
            f"--model {uri}: an MLflow model, but not one the package stage wrote (no "
            "reprolab metadata); expected models/serving or a reprolab registered model"
        )
    return model, model.unwrap_python_model()
