"""Pick the checkpoint `train.resume: true` continues from, and the MLflow run it belongs to.

`last.ckpt` when it loads. A truncated/corrupt `last.ckpt` (a kill or a full disk while
Lightning wrote it) falls back to `best.ckpt`, the last good state, with a warning that
says so; the replayed epochs are deterministic. A file that fails the weights-only check
is refused outright, and so is a changed `train.max_epochs` under a schedule laid out over
the whole run (cosine, onecycle, warmup_cosine: the restored scheduler would run past its
end). Nothing is ever restarted from scratch silently: with no loadable
checkpoint the stage stops and says how to start fresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from stages.errors import UserError

log = logging.getLogger("reprolab.train")


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Path | None  # None: nothing to resume, start fresh
    run_id: str | None  # the MLflow run to continue


WHOLE_RUN_SCHEDULES = ("cosine", "onecycle", "warmup_cosine")


def resume_point(
    checkpoints: Path, max_epochs: int | None = None, scheduler: str = "none"
) -> ResumePoint:
    """The checkpoint to continue from; `max_epochs`/`scheduler`: this run's settings."""
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
        return ResumePoint(path, extras.get("mlflow_run_id"))
    raise UserError(
        f"train.resume: true but no checkpoint in {checkpoints} can be loaded: "
        f"{'; '.join(broken)}. Move {checkpoints} aside (or set train.resume: false) to "
        f"train from scratch"
    )
