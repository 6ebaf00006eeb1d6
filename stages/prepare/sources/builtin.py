"""The datasets scikit-learn ships, plus `synthetic` (make_classification/make_regression)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import sklearn
from sklearn import datasets

from stages.prepare.sources.raw import RawData, fingerprint_arrays
from stages.schema.data import DataParams

_TABLES = {
    "iris": (datasets.load_iris, "classification"),
    "wine": (datasets.load_wine, "classification"),
    "breast_cancer": (datasets.load_breast_cancer, "classification"),
    "diabetes": (datasets.load_diabetes, "regression"),
}


def load_builtin(data: DataParams, seed: int) -> RawData:
    if data.source == "digits":
        bunch = datasets.load_digits()
        images = bunch.images.astype(np.float32)[:, None, :, :]  # (N, 1, 8, 8), values 0..16
        return RawData(
            name="digits",
            modality="image",
            X=images,
            y=bunch.target.astype(np.int64),
            fingerprint=fingerprint_arrays(bunch.images, bunch.target),
            task_hint="classification",
            classes=[str(c) for c in bunch.target_names],
            image_scale=1.0 / 16.0,
        )
    if data.source == "synthetic":
        return _synthetic(data, seed)
    loader, task = _TABLES[data.source]
    bunch = loader()
    X = pd.DataFrame(bunch.data, columns=[str(c) for c in bunch.feature_names])
    classes = [str(c) for c in bunch.target_names] if task == "classification" else None
    return RawData(
        name=data.source,
        modality="table",
        X=X,
        y=np.asarray(bunch.target),
        fingerprint=fingerprint_arrays(bunch.data, bunch.target),
        task_hint=task,
        classes=classes,
    )


def _synthetic(data: DataParams, seed: int) -> RawData:
    s = data.synthetic
    task = "regression" if data.task == "regression" else "classification"
    if task == "classification":
        X, y = datasets.make_classification(
            n_samples=s.n_samples,
            n_features=s.n_features,
            n_informative=s.n_informative,
            n_redundant=0,
            n_classes=s.n_classes,
            random_state=seed,
        )
        classes = [str(c) for c in range(s.n_classes)]
    else:
        X, y = datasets.make_regression(
            n_samples=s.n_samples,
            n_features=s.n_features,
            n_informative=s.n_informative,
            noise=s.noise,
            random_state=seed,
        )
        classes = None
    X = X.astype(np.float32, copy=False)  # halve memory before anything else holds a copy
    recipe = json.dumps(
        {"synthetic": s.model_dump(), "task": task, "seed": seed, "sklearn": sklearn.__version__},
        sort_keys=True,
    )
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(s.n_features)], copy=False)
    return RawData(
        name="synthetic",
        modality="table",
        X=frame,
        y=y,
        fingerprint=fingerprint_arrays(np.frombuffer(recipe.encode(), dtype=np.uint8)),
        task_hint=task,
        classes=classes,
    )
