"""Shared entry-point plumbing: logging set-up, argument parsing, user-facing errors."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import shlex
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from stages.runtime.errors import UserError
from stages.runtime.signals import Terminated, received

T = TypeVar("T")


def setup_logging(stage: str) -> logging.Logger:
    """One handler (stderr, `time stage LEVEL message`) for the stage's lines and the libraries'.

    Lightning's import adds a console handler of its own to the `lightning` logger, which
    also propagates to the root: every Lightning line came out twice. That handler is
    refused, so Lightning's lines come out once, in the stage's format; `OnceLines` drops
    repeats and Lightning's tips.
    """
    # MLflow's own handler prints its INFO lines (database set-up, "Validating input
    # example") in a second format, and artifact downloads draw tqdm bars into the log;
    # a user's own setting of either wins
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {stage} %(levelname)s %(message)s", datefmt="%H:%M:%S")
    )
    handler.addFilter(OnceLines())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # `import mlflow` re-levels its own top logger to INFO (dictConfig), not its children:
    # the system-metrics monitor's start/stop/"skip GPU" lines stay quiet through that
    # torch: its INFO lines (atexit "FakeTensor cache stats", c10d store set-up) say nothing
    # to a user; torch._logging keeps WARNING unless TORCH_LOGS asks for more
    for noisy in ("alembic", "mlflow", "mlflow.system_metrics", "urllib3", "git", "matplotlib",
                  "PIL", "torch"):  # fmt: skip
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _without_own_console("lightning")
    quiet_warnings()
    return logging.getLogger(f"reprolab.{stage}")


class _NoOwnConsole(logging.Logger):
    """A library's top logger that refuses the bare stderr handler its import adds."""

    def addHandler(self, hdlr: logging.Handler) -> None:
        if type(hdlr) is not logging.StreamHandler:
            super().addHandler(hdlr)


def _without_own_console(name: str) -> None:
    """Records of logger `name` and its children reach the root's handler only: a bare
    stderr handler added on import is refused (not imported yet) or removed, and the
    record propagates again (imported already: Lightning's `pytorch` and `fabric` loggers
    take a handler and stop propagating when the root had none, as in the warm interpreter
    of `stages.runtime.warm` or a notebook)."""
    previous = logging.getLoggerClass()
    logging.setLoggerClass(_NoOwnConsole)
    try:
        logging.getLogger(name)
    finally:
        logging.setLoggerClass(previous)
    loggers = logging.Logger.manager.loggerDict
    for child in [n for n in loggers if n == name or n.startswith(f"{name}.")]:
        logger = loggers[child]
        own = [h for h in getattr(logger, "handlers", ()) if type(h) is logging.StreamHandler]
        for handler in own:
            logger.removeHandler(handler)
        if own:
            logger.propagate = True


class OnceLines(logging.Filter):
    """INFO lines once per process: Lightning's per-fit lines and the train code's fit-rows
    line would otherwise repeat in every tuning trial (each trial's own line differs, so it
    stays). Lightning's "💡 Tip:" adverts (LitLogger, LitModels: `rank_zero_info` in its
    logger and callback connectors, whatever the Trainer's settings) never, nor
    `QUIET_LINES`. Other warnings and errors always pass."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith(QUIET_LINES):
            return False
        if record.levelno > logging.INFO:
            return True
        if text in self.seen or (record.name.startswith("lightning.") and "💡 Tip:" in text):
            return False
        self.seen.add(text)
        return True


# starts of library log lines (ONNX Runtime's quantizer logs to the root logger) that say
# nothing to a pipeline user
QUIET_LINES = (
    # `quantize_static_int8` does pre-process (quant_pre_process); ORT asks again for the
    # graph it re-quantizes with the input conv kept fp32
    "Please consider to run pre-processing before quantization",
    # a tensor left fp32 on purpose (the input conv's output, the classifier's flatten)
    "Quantization parameters for tensor",
)


# (category, message start) of library warnings that say nothing to a user of the pipeline
QUIET = (
    # Optuna's experimental notes (TPE `group`, PostgreSQL heartbeats and trial retries, QMC):
    # tune uses these on purpose with Optuna pinned in the lock; once per worker process
    (Warning, "The interface can change in the future."),
    # Lightning 2.6's own `_pytree` builds torch's deprecated `LeafSpec`: not our call to
    # change; once per training process (train, tune, compress)
    (FutureWarning, "`isinstance(treespec, LeafSpec)` is deprecated"),
)


def quiet_warnings() -> None:
    """Library warnings that tell a pipeline user nothing, silenced in this one place.

    Also at display time: MLflow wraps some calls in `simplefilter("once", UserWarning)`,
    which overrides any filter installed before it.
    """
    for category, start in QUIET:
        warnings.filterwarnings("ignore", message=f"(?s).*{re.escape(start)}", category=category)
    show = warnings.showwarning
    if getattr(show, "reprolab_quiet", False):
        return

    def filtered(message, category, *args, **kwargs):
        if not any(issubclass(category, c) and s in str(message) for c, s in QUIET):
            show(message, category, *args, **kwargs)

    filtered.reprolab_quiet = True
    warnings.showwarning = filtered


def path_field(text: str) -> Any:
    """A field of a stage's `Paths` dataclass: required, `text` is its --help line."""
    return dataclasses.field(metadata={"help": text})


def parser(stage: str, description: str, paths: type) -> argparse.ArgumentParser:
    """The stage's argument parser: `--params` and one option per field of its `Paths` class.

    No path has a default here: `dvc.yaml` declares them once, in the stage's `cmd`. A path
    left off the command line (a stage started by hand, a tune worker, torchrun) is read
    from that `cmd` by `run_main`.
    """
    p = argparse.ArgumentParser(prog=f"python -m stages.{stage}", description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    fields = dataclasses.fields(paths)
    for f in fields:
        p.add_argument(f"--{f.name}", help=f"{f.metadata['help']} (default: as in dvc.yaml)")
    p.set_defaults(path_options=tuple(f.name for f in fields))
    return p


def paths_from(args: argparse.Namespace, cls: type[T]) -> T:
    """The stage's `Paths` dataclass from the parsed (and filled) path options."""
    return cls(**{name: Path(getattr(args, name)) for name in cls.__dataclass_fields__})


def fill_paths(stage: str, args: argparse.Namespace, dvc_yaml: Path = Path("dvc.yaml")) -> None:
    """Set every path option not given on the command line from the stage's `cmd` in dvc.yaml."""
    missing = [name for name in args.path_options if getattr(args, name) is None]
    if not missing:
        return
    declared = declared_paths(stage, args.path_options, dvc_yaml)
    for name in missing:
        if name not in declared:
            raise UserError(
                f"--{name} not given, and the `{stage}` cmd in {dvc_yaml} does not pass it; "
                f"give --{name} on the command line"
            )
        setattr(args, name, declared[name])


def declared_paths(stage: str, names: Sequence[str], dvc_yaml: Path) -> dict[str, str]:
    """The path options (name -> value) that `dvc.yaml` passes in stage `stage`'s `cmd`."""
    if not dvc_yaml.exists():
        raise UserError(
            f"no {dvc_yaml} in {Path.cwd()} to read the `{stage}` paths from; run from the "
            f"project root or give every path option (see --help)"
        )
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages") or {}
    cmd = (stages.get(stage) or {}).get("cmd")
    if not isinstance(cmd, str):
        raise UserError(f"{dvc_yaml}: stage `{stage}` has no cmd to read its paths from")
    words = shlex.split(cmd)
    if f"stages.{stage}" in words:
        words = words[words.index(f"stages.{stage}") + 1 :]
    p = argparse.ArgumentParser(add_help=False)
    for name in names:
        p.add_argument(f"--{name}")
    known, _ = p.parse_known_args(words)
    return {name: value for name, value in vars(known).items() if value is not None}


def run_main(
    stage: str,
    body: Callable[[argparse.Namespace], object],
    ap: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse args and run `body`; user errors print one paragraph and exit 2, no traceback."""
    log = setup_logging(stage)
    args = ap.parse_args(argv)
    try:
        fill_paths(stage, args)
        body(args)
    except UserError as exc:
        print(f"error: {stage}: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        # the signal received names the exit, not the exception that reached here: a library
        # can turn SIGTERM into Ctrl-C's SystemExit/KeyboardInterrupt on the way
        sig = received() or (signal.SIGINT if isinstance(exc, KeyboardInterrupt) else None)
        if sig == signal.SIGINT:
            log.error("interrupted (SIGINT); MLflow run marked KILLED, outputs left untouched")
            return 130
        log.error("terminated (SIGTERM); MLflow run marked KILLED, outputs left untouched")
        return 143
    return 0
