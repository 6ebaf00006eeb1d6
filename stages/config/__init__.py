"""Typed schema of params.yaml and the only way params reach code.

`load()` reads the YAML safely, validates every section before any compute and turns
pydantic's errors into messages that name the file, the dotted key, the value found and
what is allowed (with a "did you mean" for misspelled keys).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from stages.runtime.errors import ConfigError
from stages.schema.augment import AugmentParams
from stages.schema.base import Section
from stages.schema.baselines import BaselinesParams
from stages.schema.compress import CompressParams
from stages.schema.data import DataParams
from stages.schema.evaluate import EvaluateParams
from stages.schema.model import ModelParams
from stages.schema.serve import ServeParams
from stages.schema.tracking import MlflowParams
from stages.schema.train import TrainParams
from stages.schema.tune import TuneParams

DEFAULT_PATH = Path("params.yaml")
_ESTIMATOR_CHECKS: ContextVar[bool] = ContextVar("estimator_checks", default=True)


class Params(Section):
    seed: int = Field(42, ge=0)
    data: DataParams = DataParams()
    augment: AugmentParams = AugmentParams()
    baselines: BaselinesParams = BaselinesParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    tune: TuneParams = TuneParams()
    compress: CompressParams = CompressParams()
    evaluate: EvaluateParams = EvaluateParams()
    serve: ServeParams = ServeParams()
    mlflow: MlflowParams = MlflowParams()


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with `safe_load`, reporting syntax errors with line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (cwd: {Path.cwd()})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(filter(None, [exc.context, exc.problem]))
        raise ConfigError(f"{where}: YAML syntax error: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML error: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections at the top level, found {type(raw).__name__}"
        )
    return raw


def load(path: str | Path = DEFAULT_PATH) -> Params:
    """Load and validate params.yaml.

    Args:
        path: the params file; relative data paths inside it resolve from its folder.

    Returns:
        The frozen, validated `Params`.

    Raises:
        ConfigError: naming file, dotted key, value found and what is allowed.
    """
    path = Path(path)
    raw = read_yaml(path)
    return validate(raw, path)


@contextlib.contextmanager
def without_estimator_checks() -> Iterator[None]:
    """Inside: `baselines.hyperparams` are not checked against the real scikit-learn
    estimators (their names are). That check imports scikit-learn, ~2 s of a stage
    process's start-up; augment, tune, train and compress never fit a baseline, and the
    validate stage (first in every `dvc repro`), `python -m stages.config` and baselines
    itself check it."""
    token = _ESTIMATOR_CHECKS.set(False)
    try:
        yield
    finally:
        _ESTIMATOR_CHECKS.reset(token)


def validate(raw: dict[str, Any], path: Path = DEFAULT_PATH) -> Params:
    """Validate an already-parsed params mapping (see `load`)."""
    context = {"root": str(path.resolve().parent), "estimators": _ESTIMATOR_CHECKS.get()}
    try:
        return Params.model_validate(raw, context=context)
    except ValidationError as exc:
        lines = [_describe(err) for err in exc.errors()]
        raise ConfigError(
            f"{path}: {len(lines)} invalid value(s):\n  " + "\n  ".join(lines)
        ) from None


# keys that moved to another section: the refusal names the new place
MOVED = {
    "evaluate.register_best": "serve.registry",
    "evaluate.registered_name": "serve.registered_name",
}


def _describe(err: dict[str, Any]) -> str:
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "<top level>"
    if err["type"] == "extra_forbidden":
        if key in MOVED:
            return f"{key}: moved to {MOVED[key]!r} (same meaning); rename the key"
        valid = _field_names(loc[:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.6)
        hint = f"; did you mean {'.'.join(loc[:-1] + (close[0],))!r}?" if close else ""
        return f"{key}: unknown key{hint} (valid keys here: {', '.join(sorted(valid))})"
    msg = err["msg"].removeprefix("Value error, ")
    found = err.get("input")
    if err["type"] == "missing":
        return f"{key}: required key is missing"
    if isinstance(found, dict):  # a check across a section's keys: the message names them
        return f"{key}: {msg}"
    return f"{key} = {found!r}: {msg}"


def _field_names(loc: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] | None = Params
    for part in loc:
        field = model.model_fields.get(part) if model else None
        model = _model_of(field.annotation) if field else None
    return list(model.model_fields) if model else []


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found:
                return found
    return None


def section_dict(cfg: Params, *sections: str) -> dict[str, Any]:
    """The named sections as plain JSON-able data (what a stage hashes and logs)."""
    dumped = cfg.model_dump(mode="json")
    return {name: dumped[name] for name in sections}


def params_hash(cfg: Params, *sections: str) -> str:
    """A stable hash of the sections a stage reads."""
    blob = json.dumps(section_dict(cfg, *sections), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
