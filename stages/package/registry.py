"""Register the packaged model and move the `champion` alias by one written rule.

Rule (README, "Serving"): the new version becomes `champion` when there is no champion
yet, or when its test headline metric is strictly better than the champion's on the same
test data (same data fingerprint and same data params hash: the same rows, split and
preprocessing). Otherwise it becomes `challenger`: a tie, a worse score, or scores on
different test data, which cannot be compared. The log line says which and why.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from stages import config
from stages.common.scores import HEADLINES
from stages.package.result import Packaged

log = logging.getLogger("reprolab.package")
CHAMPION, CHALLENGER = "champion", "challenger"


def registered_name(cfg: config.Params, schema: dict[str, Any]) -> str:
    return cfg.serve.registered_name or f"reprolab-{schema['dataset']}"


def publish(cfg: config.Params, packaged: Packaged) -> dict[str, Any]:
    """Log the model to the active run, register a version, set its alias. Returns a summary."""
    import mlflow

    from stages.package import build
    from stages.runtime import tracking

    spec, schema, headline = packaged.spec, packaged.schema, packaged.headline
    name = registered_name(cfg, schema)
    with build.model_kwargs(spec, packaged.candidate, packaged.prepared, packaged.output) as kw:
        info = mlflow.pyfunc.log_model(name="model", **kw)
    value = packaged.row.get(headline)
    pipeline = [s for s in config.Params.model_fields if s != "mlflow"]
    tags = {
        "candidate": spec.candidate,
        "kind": spec.kind,
        "headline": headline,
        f"test_{headline}": _text(value),
        f"test_{headline}_ci_low": _text(packaged.row.get(f"{headline}_ci_low")),
        f"test_{headline}_ci_high": _text(packaged.row.get(f"{headline}_ci_high")),
        "data_fingerprint": schema["fingerprint"],
        "data_params_hash": schema.get("data_params_hash", ""),
        "params_hash": config.params_hash(cfg, *pipeline),
        **tracking.git_info(),
    }
    if exp := os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = exp
    client = mlflow.MlflowClient()
    alias, why = decide(client, name, headline, value, tags)
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    client.set_registered_model_alias(name, alias, version.version)
    log.info("registered %s version %s as %s: %s", name, version.version, alias, why)
    return {"registered_model": name, "version": int(version.version), "alias": alias}


def decide(client, name: str, headline: str, value: float | None, tags: dict[str, str]):
    """(alias, reason) for a new version with `tags`, against the current champion."""
    from mlflow.exceptions import MlflowException

    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return CHAMPION, "no champion yet"
    old = champion.tags
    same_data = all(old.get(k) == tags[k] for k in ("data_fingerprint", "data_params_hash"))
    if not same_data:
        return CHALLENGER, (
            f"champion version {champion.version} was scored on other test data "
            f"(data fingerprint/params differ), so the two cannot be compared; promote by "
            f"hand with `MlflowClient().set_registered_model_alias({name!r}, 'champion', <v>)`"
        )
    if old.get("headline") != headline or value is None:
        return CHALLENGER, (
            f"champion version {champion.version} is ranked by {old.get('headline')!r}, "
            f"this one by {headline!r}"
        )
    theirs = float(old.get(f"test_{headline}", "nan"))
    higher = HEADLINES[headline]
    better = value > theirs if higher else value < theirs
    verdict = "beats" if better else "does not beat"
    alias = CHAMPION if better else CHALLENGER
    return alias, (
        f"test {headline} {value:.4f} {verdict} champion version {champion.version}'s "
        f"{theirs:.4f} on the same test data"
    )


def _text(value: Any) -> str:
    return "" if value is None else f"{float(value):.6g}"
