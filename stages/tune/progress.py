"""Progress over trials: one log line per finished trial (CI-friendly) with the best so far,
plus a tqdm bar when stderr is a terminal."""

from __future__ import annotations

import logging
import os
import sys

import optuna
from optuna.trial import TrialState

from stages.tune import study as st

log = logging.getLogger("reprolab.tune")


class TrialProgress:
    def __init__(self, total: int | None, metric: str):
        self.total, self.metric = total, metric
        self.bar = None
        if sys.stderr.isatty() and not os.environ.get("CI"):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="trials", unit="trial", dynamic_ncols=True)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = st.count(study)
        best = _best(study)
        value = "" if trial.values is None else f" {self.metric}={trial.values[0]:.4g}"
        why = trial.user_attrs.get("fail_reason") or trial.user_attrs.get("prune_reason") or ""
        log.info(
            "trial %d %s%s best=%s finished=%d/%s%s",
            trial.number,
            trial.state.name.lower(),
            value,
            best,
            done,
            self.total or "?",
            f" ({why[:120]})" if why and trial.state != TrialState.COMPLETE else "",
        )
        if self.bar is not None:
            self.bar.n = min(done, self.total or done)
            self.bar.set_postfix_str(f"best {self.metric}={best}")
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _best(study: optuna.Study) -> str:
    try:
        trials = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    except ValueError:  # no completed trial yet
        return "n/a"
    return f"{trials[0].values[0]:.4g}" if trials else "n/a"
