"""The train stage's paths, as `dvc.yaml` passes them (no defaults: declared there once)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """Every path the stage reads or writes, as `dvc.yaml` passes them."""

    prepared: Path
    augmented: Path
    checkpoints: Path
    ckpt: Path
    model: Path
    metrics: Path
    history: Path

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
            checkpoints=out / "checkpoints",
            ckpt=out / "model.ckpt",
            model=out / "model.pt",
            metrics=out / "train.json",
            history=out / "history.csv",
        )
