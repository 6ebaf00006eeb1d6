"""One tune stage run (or one joining worker): study, parent run, workers, outputs."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import optuna

from stages import config
from stages.common import fit_rows
from stages.runtime import tracking, tracking_inputs, tracking_retry
from stages.runtime.errors import UserError
from stages.tune import study as st
from stages.tune.naming import study_name
from stages.tune.outputs import write_outputs
from stages.tune.trial_runs import log_pareto_front
from stages.tune.worker import run_worker

SECTIONS = ("seed", "model", "train", "augment", "tune")
log = logging.getLogger("reprolab.tune")


class TuneSession:
    def __init__(
        self,
        cfg: config.Params,
        raw: dict[str, Any],
        schema: dict[str, Any],
        args: argparse.Namespace,
    ):
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # our TrialProgress logs trials
        tracking_retry.configure()  # trial runs get the same bounded retries as stage runs
        self.cfg, self.raw, self.schema, self.args = cfg, raw, schema, args
        self.experiment = tracking.experiment_name(cfg, schema["dataset"])
        self.name = args.study_name or study_name(cfg, self.experiment, schema["fingerprint"])
        self.out = Path(args.out)
        self.journal = self.out / "study" / "journal.log"
        self.deadline = time.time() + cfg.tune.timeout if cfg.tune.timeout else None
        self.metric, self.direction = cfg.tune.resolved_metric(schema["task"])

    def open(self):
        study = st.open_study(
            self.cfg.tune, self.name, self.cfg.seed, self.journal, self.schema["task"]
        )
        study.set_metric_names([self.metric, *self.cfg.tune.objectives])
        return study

    def _objective(self):
        from stages.tune.objective import make_train_trial

        return make_train_trial(
            self.cfg,
            self.schema,
            Path(self.args.prepared),
            Path(self.args.augmented),
            self.name,
            self.journal,
        )

    def run_as_stage(self) -> dict[str, Any]:
        started = time.perf_counter()
        study = self.open()
        st.recover_stale_trials(study)
        self._enqueue_current_params(study)
        done = st.count(study)
        log.info(
            "study=%s storage=%s finished=%d/%s workers=%d",
            self.name,
            tracking.mask_secrets(st.storage_url(self.cfg.tune) or str(self.journal)),
            done,
            self.cfg.tune.n_trials,
            self.cfg.tune.n_workers,
        )
        with tracking.stage_run(
            "tune",
            self.cfg,
            SECTIONS,
            schema=self.schema,
            inputs=[self.args.prepared, self.args.augmented],
            system_metrics=True,
        ) as parent:
            prepared = Path(self.args.prepared)
            source = Path(self.args.augmented) if self.cfg.train.use_augmented else prepared
            splits = fit_rows.splits(source, prepared, "train")  # trials fit on train alone
            tracking_inputs.log_splits(self.schema["dataset"], splits)
            mlflow.set_tags({"optuna_study": self.name, "resumed_with_finished": str(done)})
            procs = self._spawn(self.cfg.tune.n_workers - 1, parent.info.run_id)
            try:
                client = mlflow.MlflowClient()
                objective = self._objective()

                def work() -> None:
                    run_worker(
                        study,
                        self.raw,
                        self.cfg.tune,
                        objective,
                        client,
                        parent.info.experiment_id,
                        parent.info.run_id,
                        self.deadline,
                    )

                work()
                self._join(procs)
                self._drain(study, work)
            finally:
                for proc in procs:
                    if proc.poll() is None:
                        proc.terminate()
                for proc in procs:
                    proc.wait(timeout=60)
            if not st.count(study, (st.FINISHED[0],)):
                raise UserError(
                    f"study {self.name}: no trial completed "
                    f"({st.trial_summary(study)}); see the trials' fail_reason "
                    "user attributes or the MLflow trial runs"
                )
            metrics = write_outputs(
                study,
                self.cfg,
                self.out,
                Path(self.args.metrics),
                time.perf_counter() - started,
                self.metric,
            )
            self._log_parent(metrics, study)
        return metrics

    def _enqueue_current_params(self, study) -> None:
        """A new study's trial 0 is params.yaml's own values, when they lie inside the
        space: the search then cannot end worse (on val) than the untuned defaults."""
        if study.get_trials(deepcopy=False):
            return
        from stages.common.search_space import current_point

        point, why = current_point(self.cfg.tune.search_space, self.cfg.model_dump(mode="json"))
        if point is None:
            log.info("trial 0 is not params.yaml's values: %s (outside the search space)", why)
            return
        study.enqueue_trial(point, user_attrs={"source": "params.yaml"})
        log.info("trial 0 = params.yaml's current values: %s", point)

    def run_as_worker(self) -> None:
        study = self.open()
        client = mlflow.MlflowClient(tracking.tracking_uri(self.cfg))
        mlflow.set_tracking_uri(tracking.tracking_uri(self.cfg))
        parent = self.args.parent_run_id or self._find_parent(client)
        experiment_id = client.get_run(parent).info.experiment_id
        log.info("worker pid=%d joins study=%s parent_run=%s", os.getpid(), self.name, parent)
        run_worker(
            study,
            self.raw,
            self.cfg.tune,
            self._objective(),
            client,
            experiment_id,
            parent,
            self.deadline,
        )

    def _find_parent(self, client) -> str:
        """The stage's RUNNING tune run; a worker started first waits for it (grace period)."""
        give_up = time.time() + self.cfg.tune.grace_period
        runs = []
        while not runs and time.time() < give_up:
            exp = client.get_experiment_by_name(self.experiment)
            runs = (
                []
                if exp is None
                else client.search_runs(
                    [exp.experiment_id],
                    f"tags.optuna_study = '{self.name}' and attributes.status = 'RUNNING'",
                    max_results=1,
                    order_by=["start_time DESC"],
                )
            )
            if not runs:
                time.sleep(2)
        if not runs:
            raise UserError(
                f"no RUNNING tune stage for study {self.name!r} in experiment "
                f"{self.experiment!r}; start `dvc repro tune` first, then workers"
            )
        return runs[0].info.run_id

    def _spawn(self, n: int, parent: str) -> list[subprocess.Popen]:
        a = self.args
        cmd = [
            sys.executable,
            "-m",
            "stages.tune",
            "--worker",
            "--params",
            a.params,
            "--study-name",
            self.name,
            "--parent-run-id",
            parent,
            "--out",
            a.out,
            "--prepared",
            a.prepared,
            "--augmented",
            a.augmented,
        ]
        return [
            subprocess.Popen(cmd, env={**os.environ, "REPROLAB_WORKER_INDEX": str(i + 1)})
            for i in range(n)
        ]

    def _join(self, procs: list[subprocess.Popen]) -> None:
        """Wait for local workers; a dead one is logged, and its trial recovered later."""
        for proc in procs:
            code = proc.wait()
            if code != 0:
                log.warning(
                    "tune worker pid %d exited with code %d; its trial (if any) will "
                    "be failed and retried",
                    proc.pid,
                    code,
                )

    def _drain(self, study, work) -> None:
        """Until `n_trials` trials are finished: fail the trials of dead workers (heartbeat on
        RDB storage, pid check on the journal), run their retries and any budget left, and
        wait for trials still running on other machines."""
        target = self.cfg.tune.n_trials
        while target and st.count(study) < target:
            if self.deadline and time.time() >= self.deadline:
                return
            st.fail_stale(study)
            if st.budget_left(study, self.cfg.tune) or st.waiting(study):
                work()
                continue
            log.info(
                "waiting for other workers: %d/%s finished, %d running",
                st.count(study),
                target,
                st.running(study),
            )
            time.sleep(min(5, self.cfg.tune.heartbeat_interval))

    def _log_parent(self, metrics: dict[str, Any], study: optuna.Study) -> None:
        numeric = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        numeric.update({f"trials_{k}": v for k, v in metrics["trials"].items()})
        mlflow.log_metrics(numeric)
        mlflow.set_tag("best_trial", str(metrics["best_trial"]))
        mlflow.log_artifact(str(self.out / "best_params.yaml"))
        mlflow.log_artifacts(str(self.out / "plots"), artifact_path="plots")
        if "pareto_front" in metrics:
            run_id = mlflow.active_run().info.run_id
            log_pareto_front(mlflow.MlflowClient(), run_id, study, metrics["pareto_front"])
