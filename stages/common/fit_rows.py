"""The rows a final model is fit on: the train split, or train + val (a refit).

Tuning uses val to choose hyperparameters; after that, fitting the final models on train +
val (scikit-learn's `refit`) gives them the val rows too (+21% rows on digits). Test stays
unseen, so the leaderboard is as honest as before; val scores of such a model are
in-sample, and the stages that report them say so (`fit_on` in their metrics and runs).
Every candidate of the leaderboard (network, baselines, compressed variants) is fit on
the same rows: `train.fit_on` is read by the train, baselines and compress stages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.common import io
from stages.runtime.errors import UserError


def files(source: Path, fit_on: str) -> list[Path]:
    """The split files under `source` (data/prepared or data/augmented) to fit on."""
    names = ["train.npz", "val.npz"] if fit_on == "train+val" else ["train.npz"]
    return [Path(source) / name for name in names]


def splits(source: Path, prepared: Path, fit_on: str) -> dict[str, list[Path]]:
    """What a fitting stage reads, by use: the fit rows (`train`) and prepared's `val`."""
    return {"train": files(source, fit_on), "val": [Path(prepared) / "val.npz"]}


def load(source: Path, fit_on: str) -> tuple[dict[str, np.ndarray], list[Path]]:
    """X, y of the fit rows (train first, then val) and the files they came from."""
    paths = files(source, fit_on)
    parts = []
    for path in paths:
        if path.name == "val.npz" and not path.exists():
            raise UserError(
                f"missing {path}: train.fit_on = 'train+val' fits on the val rows too; "
                "re-run the stage that writes it (`dvc repro`), or set train.fit_on: train"
            )
        parts.append(io.load_npz(path, "X", "y"))
    rows = {k: np.concatenate([p[k] for p in parts]) for k in ("X", "y")}
    return rows, paths


def describe(fit_on: str, paths: list[Path], rows: int) -> str:
    """The log line's account of the fit rows (says when val scores are in-sample)."""
    text = f"fit_on={fit_on} fit={' + '.join(str(p) for p in paths)} rows={rows}"
    return text + (" (val rows are in the fit: val scores are in-sample)" if len(paths) > 1 else "")
