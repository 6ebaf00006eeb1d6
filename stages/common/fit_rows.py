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

from stages.common import splits as split_store
from stages.runtime.errors import UserError


def files(source: Path, fit_on: str) -> list[Path]:
    """The split folders under `source` (data/prepared or data/augmented) to fit on."""
    names = ["train", "val"] if fit_on == "train+val" else ["train"]
    return [Path(source) / name for name in names]


def splits(source: Path, prepared: Path, fit_on: str) -> dict[str, list[Path]]:
    """What a fitting stage reads, by use: the fit rows (`train`) and prepared's `val`."""
    return {"train": files(source, fit_on), "val": [Path(prepared) / "val"]}


def _checked(source: Path, fit_on: str) -> list[Path]:
    paths = files(source, fit_on)
    for path in paths:
        if path.name == "val" and not split_store.exists(path):
            raise UserError(
                f"missing {path}: train.fit_on = 'train+val' fits on the val rows too; "
                "re-run the stage that writes it (`dvc repro`), or set train.fit_on: train"
            )
    return paths


def load(source: Path, fit_on: str) -> tuple[dict[str, np.ndarray], list[Path]]:
    """X (float32), y of the fit rows (train first, then val), and the folders read."""
    paths = _checked(source, fit_on)
    parts = [split_store.load(path, "X", "y") for path in paths]
    rows = {k: np.concatenate([p[k] for p in parts]) for k in ("X", "y")}
    return rows, paths


def open_rows(source: Path, fit_on: str):
    """The fit rows as on-disk readers (X as stored, y), their uint8 scale, the folders."""
    paths = _checked(source, fit_on)
    parts = [split_store.open_split(path, "X", "y") for path in paths]
    if len(parts) == 1:
        X, y = parts[0]["X"], parts[0]["y"]
    else:
        X = split_store.Stacked([p["X"] for p in parts])
        y = np.concatenate([np.asarray(p["y"]) for p in parts])
    return X, np.asarray(y), split_store.x_scale(paths[0]), paths


BUDGET_BYTES = 2 << 30  # train.in_memory: auto holds rows whose float32 form fits this


def float_bytes(*readers) -> int:
    """Bytes of the readers' rows as float32 model input."""
    return sum(len(r) * int(np.prod(r.shape[1:], dtype=np.int64)) * 4 for r in readers)


def in_memory(setting: str | bool, nbytes: int) -> bool:
    """`train.in_memory` for rows of `nbytes` (as float32): auto = they fit BUDGET_BYTES
    and a quarter of the memory available now."""
    if setting != "auto":
        return bool(setting)
    import psutil

    return nbytes <= min(BUDGET_BYTES, psutil.virtual_memory().available // 4)


def describe(fit_on: str, paths: list[Path], rows: int) -> str:
    """The log line's account of the fit rows (says when val scores are in-sample)."""
    text = f"fit_on={fit_on} fit={' + '.join(str(p) for p in paths)} rows={rows}"
    return text + (" (val rows are in the fit: val scores are in-sample)" if len(paths) > 1 else "")
