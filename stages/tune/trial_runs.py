"""One nested MLflow run per Optuna trial, under the study's parent run.

Our own thin integration (Optuna's MLflowCallback is deprecated and loses the parent):
workers in other processes create their trial runs with the client API and the
`mlflow.parentRunId` tag, log per-epoch curves with `log_batch`, and end each run with the
trial's state (complete -> FINISHED, pruned -> FINISHED + state tag, failed -> FAILED,
interrupted -> KILLED).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from stages.runtime.tracking import flatten

MAX_PARAM_LEN = 6000


class TrialRun:
    def __init__(
        self,
        client: MlflowClient,
        experiment_id: str,
        parent_run_id: str,
        number: int,
        tags: Mapping[str, str] | None = None,
    ):
        self.client = client
        run = client.create_run(
            experiment_id,
            run_name=f"trial-{number:04d}",
            tags={
                "mlflow.parentRunId": parent_run_id,
                "stage": "tune-trial",
                "optuna_trial": str(number),
                **(tags or {}),
            },
        )
        self.run_id = run.info.run_id
        self._pending: list[Metric] = []

    def log_params(self, params: Mapping[str, Any]) -> None:
        batch = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in flatten(dict(params)).items()]
        for start in range(0, len(batch), 100):
            self.client.log_batch(self.run_id, params=batch[start : start + 100])

    def log_epoch(self, metrics: Mapping[str, float], epoch: int) -> None:
        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, epoch) for k, v in metrics.items())
        self.flush()

    def flush(self) -> None:
        if self._pending:
            self.client.log_batch(self.run_id, metrics=self._pending)
            self._pending = []

    def finish(
        self, state: str, reason: str | None = None, metrics: Mapping[str, float] | None = None
    ) -> None:
        """state: complete | pruned | fail | killed."""
        if metrics:
            now = int(time.time() * 1000)
            self._pending.extend(Metric(k, float(v), now, 0) for k, v in metrics.items())
        self.flush()
        self.client.set_tag(self.run_id, "trial_state", state)
        if reason:
            self.client.set_tag(self.run_id, "trial_reason", reason[:5000])
        status = {
            "complete": "FINISHED",
            "pruned": "FINISHED",
            "fail": "FAILED",
            "killed": "KILLED",
        }[state]
        self.client.set_terminated(self.run_id, status=status)


class EpochSink:
    """`sink(epoch, metrics)` for the train code: per-epoch curves into one trial run.

    Picklable (it reconnects in whatever process calls it), so it also works from the rank-0
    process of a forked or spawned DDP trial.
    """

    def __init__(self, tracking_uri: str, run_id: str, every_s: float = 5.0):
        self.tracking_uri, self.run_id, self.every_s = tracking_uri, run_id, every_s
        self._client: MlflowClient | None = None
        self._pending: list[Metric] = []
        self._last = time.monotonic()

    def __call__(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Buffer the epoch; write when `every_s` passed since the last write (a live curve
        for long trials) and on `close`. One store write costs ~12 ms on sqlite: a write per
        epoch of a 0.3 s epoch was a third of a short trial's framework overhead."""
        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, epoch) for k, v in metrics.items())
        if time.monotonic() - self._last >= self.every_s:
            self.close()

    def close(self) -> None:
        """Write what is buffered (the trial's end, or its rank-0 process's teardown)."""
        if self._pending:
            if self._client is None:
                self._client = MlflowClient(self.tracking_uri)
            for start in range(0, len(self._pending), 1000):  # MLflow's per-call limit
                self._client.log_batch(self.run_id, metrics=self._pending[start : start + 1000])
            self._pending = []
        self._last = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None, "_pending": []}


def log_pareto_front(client: MlflowClient, parent_run_id: str, study, front: list[dict]) -> None:
    """A multi-objective study's front, where MLflow users look for it.

    On the parent run: a table artifact `pareto_front.json` (one row per front trial: its
    number, objective values, params and run id) and the tag `pareto_front_trials`. On every
    complete trial's run: the tag `pareto_front` = true/false, rewritten on each stage run
    since a resumed study's front moves, so `tags.pareto_front = 'true'` finds the front.
    """
    from optuna.trial import TrialState

    params = sorted({k for row in front for k in row["params"]})
    columns: dict[str, list[Any]] = {"trial": [row["trial"] for row in front]}
    for name in front[0]["values"] if front else ():
        columns[name] = [row["values"][name] for row in front]
    for key in params:
        columns[key] = [row["params"].get(key) for row in front]
    columns["mlflow_run_id"] = [row["mlflow_run_id"] for row in front]
    client.log_table(parent_run_id, data=columns, artifact_file="pareto_front.json")
    on_front = {row["trial"] for row in front}
    client.set_tag(parent_run_id, "pareto_front_trials", ",".join(map(str, sorted(on_front))))
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if run_id := t.user_attrs.get("mlflow_run_id"):
            client.set_tag(run_id, "pareto_front", str(t.number in on_front).lower())
