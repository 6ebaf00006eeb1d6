"""Table preprocessing fitted on the training split only: impute, encode, scale."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler

from stages.common.preprocess import normalize_columns
from stages.schema.data import DataParams


@dataclass
class FittedTable:
    transformer: ColumnTransformer
    feature_names: list[str]
    numeric_mask: list[bool]  # per output feature: True for scaled numeric columns
    stats: dict[str, Any]


def build_transformer(data: DataParams, numeric: list[str], categorical: list[str]):
    scaler = {"standard": StandardScaler(), "minmax": MinMaxScaler(), "none": "passthrough"}
    num = Pipeline(
        [("impute", SimpleImputer(strategy=data.impute.numeric)), ("scale", scaler[data.scaling])]
    )
    if data.categorical_encoding == "onehot":
        enc = OneHotEncoder(
            handle_unknown="infrequent_if_exist",
            sparse_output=False,
            max_categories=data.max_categories,
            dtype=np.float32,
        )
    else:
        enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, dtype=np.float32)
    cat_impute = SimpleImputer(strategy=data.impute.categorical, fill_value="missing")
    cat = Pipeline([("impute", cat_impute), ("encode", enc)])
    parts = []
    if numeric:
        parts.append(("num", num, numeric))
    if categorical:
        parts.append(("cat", cat, categorical))
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)


def fit_table(train: pd.DataFrame, data: DataParams) -> tuple[FittedTable, pd.DataFrame]:
    """Fit the preprocessing on the training rows. Returns it and the normalized frame."""
    frame, numeric, categorical = normalize_columns(train)
    ct = build_transformer(data, numeric, categorical)
    ct.fit(frame)
    names = [str(n) for n in ct.get_feature_names_out()]
    numeric_mask = [n in set(numeric) for n in names]
    return FittedTable(ct, names, numeric_mask, _stats(ct, numeric, categorical)), frame


def transform(fitted: FittedTable, frame: pd.DataFrame) -> np.ndarray:
    normalized, _, _ = normalize_columns(frame)
    return np.asarray(fitted.transformer.transform(normalized), dtype=np.float32)


def _stats(ct: ColumnTransformer, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"numeric": {}, "categorical": {}}
    if numeric:
        pipe = ct.named_transformers_["num"]
        imputed = pipe.named_steps["impute"].statistics_
        scaler = pipe.named_steps["scale"]
        for i, col in enumerate(numeric):
            entry = {"impute_value": float(imputed[i])}
            if isinstance(scaler, StandardScaler):
                entry.update(mean=float(scaler.mean_[i]), scale=float(scaler.scale_[i]))
            elif isinstance(scaler, MinMaxScaler):
                entry.update(min=float(scaler.data_min_[i]), max=float(scaler.data_max_[i]))
            out["numeric"][col] = entry
    if categorical:
        enc = ct.named_transformers_["cat"].named_steps["encode"]
        for col, cats in zip(categorical, enc.categories_, strict=True):
            out["categorical"][col] = [str(c) for c in cats]
    return out
