"""Search space: dotted params paths -> Optuna distributions, checked against the schema.

Every path must name a leaf of the params schema, and both bounds (or every choice) must
be values the schema accepts at that path, so a typo or an out-of-range bound is refused
before any trial runs, with the schema's own message.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

from stages import config
from stages.runtime.errors import ConfigError
from stages.schema.tune import Distribution


def set_dotted(tree: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Return a deep copy of `tree` with `path` (a.b.c) set to `value`."""
    out = copy.deepcopy(tree)
    node = out
    *parents, leaf = path.split(".")
    for part in parents:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[leaf] = value
    return out


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for path, value in overrides.items():
        raw = set_dotted(raw, path, value)
    return raw


def schema_leaf(path: str) -> str | None:
    """None if `path` is a leaf of the params schema, else why not (with a suggestion)."""
    model: Any = config.Params
    parts = path.split(".")
    for i, part in enumerate(parts):
        fields = model.model_fields if model else {}
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=1)
            prefix = ".".join(parts[:i])
            hint = (
                f"; did you mean {'.'.join(filter(None, [prefix, close[0]]))!r}?" if close else ""
            )
            return f"{'.'.join(parts[: i + 1])!r} is not a params key{hint}"
        model = config._model_of(fields[part].annotation)
        if model is not None and i == len(parts) - 1:
            return f"{path!r} is a section, not a value; name one of its keys"
    return None


def candidate_values(dist: Distribution) -> list[Any]:
    if dist.type == "categorical":
        return list(dist.choices or [])
    cast = int if dist.type == "int" else float
    return [cast(dist.low), cast(dist.high)]


def trial_params(raw: dict[str, Any], max_epochs: int, point: dict[str, Any]) -> config.Params:
    """The params of one trial: the base file, the sampled `point` and the trial's fixed keys.

    A trial always fits on train alone (`train.fit_on: train`): it is scored on val.
    Raises ConfigError when the values are invalid together.
    """
    fixed = {"train.max_epochs": max_epochs, "train.fit_on": "train"}
    return config.validate(apply_overrides(raw, {**point, **fixed}))


# Set by the tune stage in every trial, so not searchable.
TRIAL_FIXED = {
    "train.max_epochs": "a trial trains tune.max_epochs epochs; set that instead",
    "train.fit_on": "a trial always fits on train (it is scored on val)",
}


def validate_space(
    space: dict[str, Distribution], raw: dict[str, Any], params_path: str = "params.yaml"
) -> None:
    """Refuse unknown paths and bounds/choices the schema would reject at that path."""
    problems = []
    for path, dist in space.items():
        if path.startswith(("tune.", "mlflow.", "seed")):
            problems.append(
                f"tune.search_space.{path}: tuning {path.split('.')[0]!r} is not allowed"
            )
            continue
        if path in TRIAL_FIXED:
            problems.append(f"tune.search_space.{path}: {TRIAL_FIXED[path]}")
            continue
        why = schema_leaf(path)
        if why:
            problems.append(f"tune.search_space.{path}: {why}")
            continue
        for value in candidate_values(dist):
            try:
                config.validate(set_dotted(raw, path, value))
            except ConfigError as exc:
                detail = str(exc).split("\n", 1)[-1].strip()
                problems.append(
                    f"tune.search_space.{path}: value {value!r} is not accepted there: {detail}"
                )
    if problems:
        raise ConfigError(f"{params_path}: invalid search space:\n  " + "\n  ".join(problems))


def suggest(trial: Any, space: dict[str, Distribution]) -> dict[str, Any]:
    """Sample one point; a dimension whose `when` conditions fail is not sampled at all."""
    chosen: dict[str, Any] = {}
    for path, dist in space.items():
        if not _active(dist, chosen):
            continue
        if dist.type == "categorical":
            chosen[path] = trial.suggest_categorical(path, dist.choices)
        elif dist.type == "int":
            step = int(dist.step or 1)
            chosen[path] = trial.suggest_int(
                path, int(dist.low), int(dist.high), step=step, log=dist.log
            )
        else:
            chosen[path] = trial.suggest_float(
                path, dist.low, dist.high, step=dist.step, log=dist.log
            )
    return chosen


def current_point(
    space: dict[str, Distribution], values: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """The point `values` (the validated params as plain data) is in this space, or None
    and why not: (point, "") when every active dimension's current value lies inside it."""
    chosen: dict[str, Any] = {}
    for path, dist in space.items():
        if not _active(dist, chosen):
            continue
        value: Any = values
        for key in path.split("."):
            value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
        why = _outside(dist, value)
        if why:
            return None, f"{path} = {value!r} {why}"
        chosen[path] = value
    return chosen, ""


def _outside(dist: Distribution, value: Any) -> str:
    """'' when `value` is a point of `dist`, else what is wrong."""
    if value is _MISSING:
        return "is not set"
    if dist.type == "categorical":
        return "" if value in dist.choices else f"is not one of {dist.choices}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "is not a number"
    if dist.type == "int" and value != int(value):
        return "is not an integer"
    if not dist.low <= value <= dist.high:
        return f"lies outside [{dist.low:g}, {dist.high:g}]"
    step = dist.step or (1 if dist.type == "int" else None)
    if step and abs((value - dist.low) / step - round((value - dist.low) / step)) > 1e-9:
        return f"is off the grid of step {step:g} from {dist.low:g}"
    return ""


def _active(dist: Distribution, chosen: dict[str, Any]) -> bool:
    """A dimension is sampled (and checked) only where its `when` conditions hold."""
    return not dist.when or all(chosen.get(k, _MISSING) in v for k, v in dist.when.items())


_MISSING = object()
