"""One nested MLflow run per compressed variant, under the compress stage's run.

Created with the client API and the `mlflow.parentRunId` tag (as the tune stage's trial
runs are); each ends FINISHED (a degenerate variant with its reason as the `degenerate`
tag), or FAILED with the variant's error as a tag, or KILLED when Ctrl-C/SIGTERM stops the
stage during that variant.
"""

from __future__ import annotations

import time
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from stages.runtime.tracking import flatten

MAX_PARAM_LEN = 6000


class VariantRuns:
    def __init__(self, parent: Any):
        self.client = MlflowClient()
        self.parent_id = parent.info.run_id
        self.experiment_id = parent.info.experiment_id

    def start(self, name: str, method: str) -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={
                "mlflow.parentRunId": self.parent_id,
                "stage": "compress-variant",
                "variant": name,
                "method": method,
            },
        )
        return run.info.run_id

    def finish(self, run_id: str, row: dict[str, Any]) -> None:
        metrics = {
            k: float(v)
            for k, v in row.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        for key, value in flatten({k: v for k, v in row.items() if isinstance(v, dict)}).items():
            if isinstance(value, int | float):
                metrics[key] = float(value)
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
            params=[
                Param(k, str(v)[:MAX_PARAM_LEN])
                for k, v in row.items()
                if isinstance(v, str) and k != "error"
            ],
        )
        if row.get("error"):
            self.client.set_tag(run_id, "error", row["error"][:5000])
        if row.get("reason"):
            self.client.set_tag(run_id, "degenerate", row["reason"][:5000])
        failed = row["status"] == "failed"
        self.client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")

    def kill(self, run_id: str) -> None:
        """The stage was interrupted during this variant: end its run KILLED, not RUNNING."""
        self.client.set_terminated(run_id, status="KILLED")
