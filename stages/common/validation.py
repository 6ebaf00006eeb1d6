"""Everything a stage would refuse about the params, checked at once before any work.

The params file (schema), the search space (its paths and every value it can draw) and the
combinations the data and machine refuse (`compat`): `python -m stages.config`, the
validate stage that heads `dvc.yaml`, tune before its first trial, and train all run this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages import config
from stages.common import compat, io
from stages.common.search_space import candidate_values, set_dotted, trial_params, validate_space
from stages.runtime.errors import ConfigError

log = logging.getLogger("reprolab.validate")


@dataclass
class Report:
    """What validation found short of a refusal."""

    cfg: config.Params
    schema: dict[str, Any] | None  # prepare's schema.json, None when there is none yet
    warnings: list[str] = field(default_factory=list)


def read_schema_if_any(
    prepared: Path | None, cfg: config.Params, current: bool = False
) -> dict[str, Any] | None:
    """prepare's schema.json, if it was written from the `seed` and `data` params in force
    (or `current`: the caller's stage depends on it, so it is the data it will use).

    After a change to `data`, prepare will write a new one; the old one describes other data.
    """
    if prepared is None or not (Path(prepared) / "schema.json").exists():
        return None
    schema = io.read_schema(Path(prepared))  # a damaged one is refused, by name
    if not current and schema.get("data_params_hash") != config.params_hash(cfg, "seed", "data"):
        return None
    return schema


def validate(params_path: Path, prepared: Path | None, current: bool = False) -> Report:
    """Refuse (ConfigError) whatever a stage would refuse; return warnings and the schema.

    Data checks (architecture vs input layout, patch size vs image size, loss and monitor vs
    task) need the data's schema: they run when `prepared` holds a schema.json written from
    the `seed` and `data` params in force (or `current`: a stage that depends on `prepared`
    checks against it as it is); otherwise train and tune run them on the new one.
    """
    cfg = config.load(params_path)
    raw = config.read_yaml(Path(params_path))
    schema = read_schema_if_any(prepared, cfg, current)
    tune = cfg.tune
    space = tune.search_space if tune.enabled else {}
    if space:
        validate_space(space, raw, str(params_path))
    problems = []
    # train sees the tuned values in place of the searched keys when train.use_tuned
    overlaid = set(space) if cfg.train.use_tuned else set()
    problems += [p.text for p in compat.problems(cfg, schema) if not set(p.keys) & overlaid]
    if tune.enabled:
        problems += _trial_problems(cfg, raw, schema, problems)
    if problems:
        unique = list(dict.fromkeys(problems))
        raise ConfigError(f"{params_path}: incompatible params:\n  " + "\n  ".join(unique))
    return Report(cfg, schema, compat.device_warnings(cfg))


def _trial_problems(
    cfg: config.Params, raw: dict[str, Any], schema: dict[str, Any] | None, seen: list[str]
) -> list[str]:
    """What every trial would inherit, and what each value the search space can draw breaks."""
    space = cfg.tune.search_space
    base_raw = set_dotted(raw, "train.max_epochs", cfg.tune.max_epochs)
    try:
        base = trial_params(raw, cfg.tune.max_epochs, {})
    except ConfigError as exc:
        return [f"tune: every trial would be refused: {exc}"]
    found = [
        f"tune: every trial would be refused: {p.text}"
        for p in compat.problems(base, schema)
        if not set(p.keys) & set(space) and p.text not in seen
    ]
    for key, dist in space.items():
        for value in candidate_values(dist):
            drawn = config.validate(set_dotted(base_raw, key, value))
            found += [
                f"tune.search_space.{key}: value {value!r} can be drawn, but {p.text}"
                for p in compat.problems(drawn, schema)
                if key in p.keys
            ]
    return found
