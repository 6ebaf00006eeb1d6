"""The train stage's paths, as `dvc.yaml` passes them (no defaults: declared there once)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.runtime.cli import path_field


@dataclass(frozen=True)
class Paths:
    """Every path the stage reads or writes, as `dvc.yaml` passes them."""

    prepared: Path = path_field("prepare stage output")
    augmented: Path = path_field("augment stage output, read when train.use_augmented")
    tuned: Path = path_field("tune stage result, overlaid when train.use_tuned")
    checkpoints: Path = path_field("last/best checkpoints (kept across runs for resume)")
    ckpt: Path = path_field("best checkpoint (copy)")
    model: Path = path_field("weights + params + schema")
    metrics: Path = path_field("metrics file")
    history: Path = path_field("per-epoch CSV")

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @classmethod
    def under(
        cls,
        out: Path,
        prepared: Path,
        augmented: Path | None = None,
    ) -> Paths:
        """Every output in one folder `out` (tests, tuning trials, benchmarks)."""
        return cls(
            prepared=prepared,
            augmented=prepared if augmented is None else augmented,
            tuned=out / "best_params.yaml",
            checkpoints=out / "checkpoints",
            ckpt=out / "model.ckpt",
            model=out / "model.pt",
            metrics=out / "train.json",
            history=out / "history.csv",
        )
