"""`evaluate:` section: how candidates are scored, compared and timed on the test split."""

from typing import Literal

from pydantic import Field

from stages.schema.base import Section


class EvaluateParams(Section):
    headline: Literal["auto", "accuracy", "macro_f1", "r2", "rmse", "mae"] = "auto"
    bootstrap: int = Field(1000, ge=100, le=100_000, description="bootstrap resamples")
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    calibration_bins: int = Field(15, ge=2, le=100)
    latency_repeats: int = Field(20, ge=1, le=10_000, description="timed calls per batch size")
    latency_budget_s: float = Field(1.0, gt=0.0, description="max seconds timed per batch size")
    threads: int = Field(1, ge=1, description="CPU threads for every candidate while timed")
