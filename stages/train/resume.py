"""Pick the checkpoint `train.resume: true` continues from, and the MLflow run it belongs to.

`last.ckpt` when it loads. A truncated/corrupt `last.ckpt` (a kill or a full disk while
Lightning wrote it) falls back to `best.ckpt`, the last good state, with a warning that
says so; the replayed epochs are deterministic. A file that fails the weights-only check
is refused outright, and so is a changed `train.max_epochs` under a schedule laid out over
the whole run (cosine, onecycle, warmup_cosine: the restored scheduler would run past its
end), and a change of the rows or batches the run steps through (`train.fit_on`,
`train.batch_size`, the number of fit rows): a resume must finish the run it continues.
Nothing is ever restarted from scratch silently: with no loadable
checkpoint the stage stops and says how to start fresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.runtime.errors import UserError

log = logging.getLogger("reprolab.train")


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Path | None  # None: nothing to resume, start fresh
    run_id: str | None  # the MLflow run to continue
    saved: dict[str, Any] = field(default_factory=dict)  # the checkpoint's reprolab extras


WHOLE_RUN_SCHEDULES = ("cosine", "onecycle", "warmup_cosine")


def resume_point(
    checkpoints: Path,
    max_epochs: int | None = None,
    scheduler: str = "none",
    fit_on: str = "train",
    batch_size: int | None = None,
) -> ResumePoint:
    """The checkpoint to continue from; the other arguments are this run's settings."""
    from lightning_modules.safe_load import CorruptFileError, UnsafeFileError, load_checked

    last, best = checkpoints / "last.ckpt", checkpoints / "best.ckpt"
    if not last.exists() and not best.exists():
        log.warning("train.resume: true but %s does not exist; starting fresh", last)
        return ResumePoint(None, None)
    broken: list[str] = []
    for path in (last, best):
        if not path.exists():
            continue
        try:
            payload = load_checked(path)
        except UnsafeFileError as exc:
            raise UserError(str(exc)) from None
        except CorruptFileError as exc:
            broken.append(str(exc))
            continue
        if not isinstance(payload, dict) or "state_dict" not in payload:
            broken.append(f"{path}: not a Lightning checkpoint (no state_dict)")
            continue
        if broken:
            log.warning(
                "%s; resuming from the last good state %s (epoch %s) instead",
                "; ".join(broken),
                path,
                payload.get("epoch"),
            )
        extras = payload.get("reprolab") or {}
        was = extras.get("max_epochs")
        if scheduler in WHOLE_RUN_SCHEDULES and was is not None and was != max_epochs:
            raise UserError(
                f"{path}: train.max_epochs was {was} when this run started, now {max_epochs}; "
                f"the {scheduler} schedule is laid out over the whole run, so resuming with "
                f"a different length would run it past its end. Set train.max_epochs: {was} "
                f"to resume, or train.resume: false to start a new run"
            )
        _same_batches(path, extras, fit_on, batch_size)
        return ResumePoint(path, extras.get("mlflow_run_id"), dict(extras))
    raise UserError(
        f"train.resume: true but no checkpoint in {checkpoints} can be loaded: "
        f"{'; '.join(broken)}. Move {checkpoints} aside (or set train.resume: false) to "
        f"train from scratch"
    )


def _same_batches(path: Path, extras: dict[str, Any], fit_on: str, batch_size: int | None):
    # checkpoints written before train.fit_on existed were all fit on train
    for key, was, now in (
        ("train.fit_on", extras.get("fit_on", "train"), fit_on),
        ("train.batch_size", extras.get("batch_size"), batch_size),
    ):
        if was is not None and now is not None and was != now:
            raise UserError(
                f"{path}: {key} was {was!r} when this run started, now {now!r}; a resume "
                f"must step through the same rows and batches as the run it finishes. Set "
                f"{key}: {was} to resume, or train.resume: false to start a new run"
            )


def check_same_rows(point: ResumePoint, rows: int) -> None:
    """Refuse resuming over a different number of fit rows (the data changed since)."""
    was = point.saved.get("fit_rows")
    if point.checkpoint is not None and was is not None and was != rows:
        raise UserError(
            f"{point.checkpoint}: the run started on {was} fit rows, the data now has {rows} "
            "(prepare/augment output changed); resuming would not finish the same run. Set "
            "train.resume: false to start a new run on the new data"
        )
