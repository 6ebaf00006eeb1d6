"""The default study name: stable across re-runs of one search, new when the search changes."""

from __future__ import annotations

import hashlib
import json

from stages import config

# train keys no trial depends on (fixed by the tune stage, or only about the final fit and
# its logging): changing them must not start a new study. dvc.yaml leaves them out of tune.
NOT_IN_TRIALS = (
    "max_epochs",
    "fit_on",
    "use_tuned",
    "resume",
    "log_every_n_steps",
    "log_per_step",
    "progress_bar",
)


def study_name(cfg: config.Params, experiment: str, fingerprint: str) -> str:
    """Stable across re-runs of the same search; changes when the search itself changes."""
    if cfg.tune.study_name:
        return cfg.tune.study_name
    dumped = cfg.model_dump(mode="json")
    search = {
        k: v
        for k, v in dumped["tune"].items()
        if k
        not in (
            "n_trials",
            "timeout",
            "n_workers",
            "storage",
            "study_name",
            "heartbeat_interval",
            "grace_period",
            "max_consecutive_failures",
        )
    }
    blob = json.dumps(
        {
            "search": search,
            "model": dumped["model"],
            "train": {k: v for k, v in dumped["train"].items() if k not in NOT_IN_TRIALS},
            "augment": dumped["augment"],
            "seed": cfg.seed,
            "data": fingerprint,
        },
        sort_keys=True,
    )
    return f"{experiment}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"
