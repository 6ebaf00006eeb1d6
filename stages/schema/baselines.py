"""`baselines:` section: which scikit-learn models run, and their hyperparameters.

Model names map to a classifier and/or a regressor; a listed model that has no variant for
the prepared task is skipped with a note, so one list serves every dataset. Hyperparameter
names *and* values are checked against the real estimator (`get_params()` and sklearn's own
parameter constraints) when params.yaml is loaded, before any compute.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from stages.schema.base import Section

# name -> {task: (module, class, fixed constructor args)}
ESTIMATORS: dict[str, dict[str, tuple[str, str, dict[str, Any]]]] = {
    "decision_tree_gini": {
        "classification": ("sklearn.tree", "DecisionTreeClassifier", {"criterion": "gini"})
    },
    "decision_tree_entropy": {
        "classification": ("sklearn.tree", "DecisionTreeClassifier", {"criterion": "entropy"})
    },
    "decision_tree": {"regression": ("sklearn.tree", "DecisionTreeRegressor", {})},
    "random_forest": {  # features per split: see MODALITY_DEFAULTS
        "classification": ("sklearn.ensemble", "RandomForestClassifier", {"max_features": "sqrt"}),
        "regression": ("sklearn.ensemble", "RandomForestRegressor", {"max_features": "sqrt"}),
    },
    "hist_gradient_boosting": {
        "classification": ("sklearn.ensemble", "HistGradientBoostingClassifier", {}),
        "regression": ("sklearn.ensemble", "HistGradientBoostingRegressor", {}),
    },
    "logreg_l1": {
        "classification": (
            "sklearn.linear_model",
            "LogisticRegression",
            {"l1_ratio": 1.0, "solver": "saga"},
        )
    },
    "logreg_l2": {"classification": ("sklearn.linear_model", "LogisticRegression", {})},
    "knn": {
        "classification": ("sklearn.neighbors", "KNeighborsClassifier", {}),
        "regression": ("sklearn.neighbors", "KNeighborsRegressor", {}),
    },
    "svc_rbf": {
        "classification": ("sklearn.svm", "SVC", {"kernel": "rbf"}),
        "regression": ("sklearn.svm", "SVR", {"kernel": "rbf"}),
    },
    "linear": {"regression": ("sklearn.linear_model", "LinearRegression", {})},
    "ridge": {"regression": ("sklearn.linear_model", "Ridge", {})},
    "lasso": {"regression": ("sklearn.linear_model", "Lasso", {})},
    "elasticnet": {"regression": ("sklearn.linear_model", "ElasticNet", {})},
    # opt-in (not in DEFAULT_MODELS): slower to fit, or no predicted probabilities
    "linear_svm": {
        "classification": ("sklearn.svm", "LinearSVC", {}),
        "regression": ("sklearn.svm", "LinearSVR", {}),
    },
    "adaboost": {
        "classification": ("sklearn.ensemble", "AdaBoostClassifier", {}),
        "regression": ("sklearn.ensemble", "AdaBoostRegressor", {}),
    },
    "gradient_boosting": {
        "classification": ("sklearn.ensemble", "GradientBoostingClassifier", {}),
        "regression": ("sklearn.ensemble", "GradientBoostingRegressor", {}),
    },
}
# defaults that depend on the kind of data, under `baselines.hyperparams`: a forest splits on
# half of a table's columns (the one-hot columns of a few categoricals make sqrt of them too
# few: on 50k-row tables 0.5 gave 0.600 accuracy / 0.707 R2 against sqrt's 0.549 / 0.644)
# and on sqrt of an image's pixels (half of 784 pixels makes the forest several times slower).
# Boosting on images looks at 30% of the pixels per split and takes 50 steps at twice the
# rate: 5k 28x28 images in 14-15 s instead of 38 s, 0.954 accuracy against 0.953
# [0.939, 0.965]. (Early stopping would be faster still, but its stratified hold-out
# fails on small folders; tables stop early above 10k rows already: sklearn's "auto".)
MODALITY_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "table": {"random_forest": {"max_features": 0.5}},
    "image": {
        "hist_gradient_boosting": {
            "max_features": 0.3,
            "learning_rate": 0.2,
            "max_iter": 50,
            "max_bins": 31,
        }
    },
}
OPT_IN = ("linear_svm", "adaboost", "gradient_boosting")
DEFAULT_MODELS = tuple(n for n in ESTIMATORS if n not in OPT_IN)
# models with impurity-based feature_importances_ (their importance plots)
TREE_MODELS = (
    "decision_tree_gini",
    "decision_tree_entropy",
    "decision_tree",
    "random_forest",
    "adaboost",
    "gradient_boosting",
)


def make_estimator(
    name: str,
    task: str,
    hyperparams: dict[str, Any],
    seed: int | None = None,
    modality: str | None = None,
):
    """A fresh, unfitted estimator for `name` and `task` (None if it has no such variant):
    its fixed arguments, then the defaults for the data's `modality`, then `hyperparams`."""
    variant = ESTIMATORS[name].get(task)
    if variant is None:
        return None
    module, cls, fixed = variant
    defaults = MODALITY_DEFAULTS.get(modality or "", {}).get(name, {})
    est = getattr(importlib.import_module(module), cls)(**{**fixed, **defaults})
    if seed is not None and "random_state" in est.get_params():
        est.set_params(random_state=seed)
    return est.set_params(**hyperparams)


class BaselinesParams(Section):
    use_augmented: bool = False
    models: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS), min_length=1)
    hyperparams: dict[str, dict[str, Any]] = Field(default_factory=dict)
    n_threads: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        "auto",
        description="threads (OpenMP/BLAS, joblib) per fit: a number, None = all cores, or "
        "auto = the cores other processes left idle since the previous fit (at least 1)",
    )
    max_rows: int | None = Field(
        200_000,
        ge=1,
        description="train rows a model is fit on, a seeded (stratified) sample; None = all",
    )
    model_max_rows: dict[str, int] = Field(
        default_factory=lambda: {"svc_rbf": 10_000},
        description="a lower row cap per model (kernel SVMs scale with rows squared)",
    )
    max_model_mb: float | None = Field(
        50.0,
        gt=0,
        description="tree models (forests, single trees) grown within this file size; "
        "None = fully grown",
    )
    importance_top: int = Field(20, ge=1, le=1000, description="features shown in the plot")
    permutation_repeats: int = Field(
        3, ge=0, le=100, description="shuffles per feature (non-tree models); 0 = off"
    )
    permutation_rows: int = Field(500, ge=10, description="val rows the permutations score")

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: list[str]) -> list[str]:
        for name in v:
            _check_name(name)
        if len(set(v)) != len(v):
            raise ValueError(f"models are listed more than once: {sorted(set(v))!r} vs {v!r}")
        return v

    @field_validator("model_max_rows")
    @classmethod
    def _known_capped_models(cls, v: dict[str, int]) -> dict[str, int]:
        for name, n in v.items():
            _check_name(name)
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"{name}: {n!r} rows; expected an integer >= 1")
        return v

    @field_validator("hyperparams")
    @classmethod
    def _hyperparams_match_estimators(cls, v: dict[str, dict[str, Any]], info: ValidationInfo):
        for name, hp in v.items():
            _check_name(name)
            if not (info.context or {}).get("estimators", True):  # without_estimator_checks
                continue
            for task in ESTIMATORS[name]:
                est = make_estimator(name, task, {})
                valid = sorted(est.get_params(deep=False))
                for key in hp:
                    if key not in valid:
                        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
                        hint = f"; did you mean {close[0]!r}?" if close else ""
                        raise ValueError(
                            f"{name}.{key}: {type(est).__name__} has no parameter "
                            f"{key!r}{hint} (valid: {', '.join(valid)})"
                        )
                try:
                    est.set_params(**hp)._validate_params()
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{name} = {hp!r}: {exc}") from None
        return v


def _check_name(name: str) -> None:
    if name not in ESTIMATORS:
        close = difflib.get_close_matches(name, list(ESTIMATORS), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (allowed: {', '.join(ESTIMATORS)})")
