"""Bad input to the served model: one message naming the column, row or file.

An MlflowException with INVALID_PARAMETER_VALUE, so `mlflow models serve` answers it with
HTTP 400 and this message (any other exception becomes a generic message and a traceback).
"""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE


class InputError(MlflowException):
    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)
