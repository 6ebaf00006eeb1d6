"""The served model's answer: `label` and `proba_<class>` columns, or `prediction`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.serving.spec import ServingSpec


def answer(spec: ServingSpec, pred: np.ndarray, proba: np.ndarray | None) -> pd.DataFrame:
    if spec.task == "regression":
        return pd.DataFrame({"prediction": np.asarray(pred, dtype=np.float64).reshape(-1)})
    classes = np.asarray(spec.classes, dtype=object)
    out = {"label": classes[np.asarray(pred, dtype=np.int64)].astype(str)}
    if proba is not None:
        for k, name in enumerate(spec.classes):
            out[f"proba_{name}"] = np.asarray(proba[:, k], dtype=np.float64)
    return pd.DataFrame(out)
