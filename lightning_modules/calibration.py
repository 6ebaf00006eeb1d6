"""Calibration rows for ONNX Runtime's static INT8 quantization (imported only there: it
loads `onnxruntime.quantization`, 0.2 s that the serving path never needs)."""

from __future__ import annotations

import numpy as np
from onnxruntime.quantization import CalibrationDataReader


class CalibrationReader(CalibrationDataReader):
    """ONNX Runtime's `CalibrationDataReader` over `X`, in equal batches fed as `input_name`.

    The entropy/percentile calibrators stack per-batch outputs, so every batch has the same
    size: the rows left over after the last full batch are not used.
    """

    def __init__(self, X: np.ndarray, input_name: str, batch_size: int = 32):
        super().__init__()
        size = min(batch_size, len(X))
        self.input_name = input_name
        self.batches = [
            np.ascontiguousarray(X[i : i + size], dtype=np.float32)
            for i in range(0, len(X) - size + 1, size)
        ]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return {self.input_name: self.batches[self.position - 1]}

    def rewind(self) -> None:
        self.position = 0
