"""`tune:` section: the Optuna study (budget, sampler, pruner, storage, search space)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from stages.schema.base import Section


class Distribution(Section):
    """One search dimension. `when` makes it conditional on other sampled values."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    when: dict[str, list[Any]] | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("categorical takes 'choices', not low/high/log")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs 'low' and 'high'")
        if self.choices is not None:
            raise ValueError(f"{self.type} takes low/high, not 'choices'")
        if self.low > self.high:
            raise ValueError(f"low={self.low:g} is greater than high={self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got low={self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("'step' cannot be combined with log=true")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be > 0, got {self.step:g}")
        if self.type == "int" and not (
            float(self.low).is_integer() and float(self.high).is_integer()
        ):
            raise ValueError(f"int bounds must be whole numbers, got {self.low}..{self.high}")
        return self


def default_space() -> dict[str, Distribution]:
    """A small, cheap default: learning rate, weight decay, width, dropout, label smoothing."""
    return {
        "train.optimizer.lr": Distribution(type="float", low=1e-3, high=2e-2, log=True),
        "train.optimizer.weight_decay": Distribution(type="float", low=1e-6, high=1e-2, log=True),
        "model.width": Distribution(type="categorical", choices=[16, 32, 48]),
        "model.dropout": Distribution(type="float", low=0.0, high=0.3),
        "train.label_smoothing": Distribution(type="float", low=0.0, high=0.15),
    }


class TuneParams(Section):
    enabled: bool = True
    n_trials: int | None = Field(12, ge=1)
    timeout: float | None = Field(None, gt=0, description="seconds; with n_trials, first wins")
    n_workers: int = Field(1, ge=1, le=64, description="local worker processes")
    max_epochs: int = Field(8, ge=1, description="epochs per trial (train.max_epochs)")
    metric: Literal[
        "auto", "val/loss", "val/acc", "val/f1", "val/auroc", "val/rmse", "val/mae", "val/r2"
    ] = Field("auto", description="auto = val/acc or val/rmse by task")
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    objectives: list[Literal["params", "latency"]] = Field(
        default_factory=list, description="extra objectives (minimized) -> Pareto front"
    )
    sampler: Literal["tpe", "random", "cmaes", "gp", "qmc"] = "tpe"
    n_startup_trials: int = Field(4, ge=0)
    pruner: Literal["hyperband", "successive_halving", "median", "none"] = "hyperband"
    reduction_factor: int = Field(
        3, ge=2, description="hyperband/successive_halving: keep the top 1/k at each rung"
    )
    storage: str | None = None
    study_name: str | None = None
    heartbeat_interval: int = Field(30, ge=1)
    grace_period: int = Field(120, ge=2)
    # trials in a row failing for the same reason before the study stops (exit 2)
    max_consecutive_failures: int = Field(3, ge=1)
    search_space: dict[str, Distribution] = Field(default_factory=default_space)

    @model_validator(mode="after")
    def _budget_and_space(self):
        if self.n_trials is None and self.timeout is None:
            raise ValueError("set n_trials and/or timeout; with neither the study never ends")
        if not self.search_space:
            raise ValueError(
                "search_space is empty; expected at least one 'dotted.path: {type: ..., ...}' entry"
            )
        order = list(self.search_space)
        for path, dist in self.search_space.items():
            for cond in dist.when or {}:
                if cond not in self.search_space or order.index(cond) > order.index(path):
                    raise ValueError(
                        f"search_space.{path}.when refers to {cond!r}, which "
                        "must be an earlier entry of the search space"
                    )
        if self.objectives and self.pruner != "none":
            raise ValueError(
                "pruning is not supported for multi-objective studies (Optuna); set pruner: none"
            )
        return self

    def resolved_metric(self, task: str) -> tuple[str, str]:
        """(metric, direction) with `auto` resolved for the task."""
        metric = self.metric
        if metric == "auto":
            metric = "val/acc" if task == "classification" else "val/rmse"
        direction = self.direction
        if direction == "auto":
            direction = "minimize" if metric in ("val/loss", "val/rmse", "val/mae") else "maximize"
        return metric, direction
