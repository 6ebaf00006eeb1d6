"""Train-loop overhead: reprolab's train stage vs a hand-written PyTorch loop, side by side.

Both train the same network (params.yaml's `model:`), on the same data and batch size, with
the same optimizer, schedule, loss and thread count; runs alternate (plain, reprolab, ...)
so background load hits both alike. Epoch time = the training part of an epoch (no
validation/checkpointing), median over epochs after the first. A third contender, the
smallest LightningModule (same net/optimizer/schedule/loss, same lean Trainer and batch
loader), splits the ratio into what Lightning itself costs and what reprolab adds. Also
measures start-up: `python -m stages.train` from process start to the first training
step, and accuracy of the default model on the test split with `serialization.predict`.

Two workloads (`--workload`): `digits`, params.yaml's defaults (cnn, 8x8 digits, batch 64,
augmented rows; the figure every earlier reading used), and `28x28`, a realistic step: a
single-channel 28x28 cnn, width 32, batch 128, on 10,000 generated 28x28 images (which
quadrant holds a blob, under noise; `compile_benchmark.generated_28x28`).

Usage: python benchmarks/train_overhead.py [--epochs 6] [--repeats 3] [--threads 2]
       [--workload digits|28x28] [--contenders plain,reprolab,bare,...] [--data DIR]
       [--full]   (also: the default params end to end, test accuracy and wall time)

`--data DIR` holds `prepared/` and `augmented/` (default: the repo's `data/`; when that has
no `prepared/` yet, the prepare and augment stages write one into a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages import config  # noqa: E402
from stages.common import splits  # noqa: E402
from stages.train.setup import module_args  # noqa: E402
from stages.train.stage import Paths, run  # noqa: E402

CONTENDERS = ("plain", "stock", "reprolab", "bare", "no_ema")


@dataclass(frozen=True)
class Data:
    """The prepare and augment stages' outputs the contenders read."""

    prepared: Path
    augmented: Path

    def train(self, cfg: config.Params) -> dict:
        source = self.augmented if cfg.train.use_augmented else self.prepared
        return splits.load(source / "train", "X", "y")

    def split(self, name: str) -> dict:
        return splits.load(self.prepared / name, "X", "y")

    def schema(self) -> dict:
        return json.loads((self.prepared / "schema.json").read_text())


def digits_data(folder: Path | None, tmp: Path) -> Data:
    """`folder`'s prepared/augmented digits, or made by the stages under `tmp`."""
    folder = folder or ROOT / "data"
    if (folder / "prepared" / "schema.json").exists():
        return Data(folder / "prepared", folder / "augmented")
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'prep.db'}", CI="1")
    out = Data(tmp / "data/prepared", tmp / "data/augmented")
    for stage, args in (
        ("prepare", ["--out", str(out.prepared)]),
        ("augment", ["--prepared", str(out.prepared), "--out", str(out.augmented)]),
    ):
        cmd = [sys.executable, "-m", f"stages.{stage}", "--params", "params.yaml", *args]
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return out


# the realistic step of issue #19: 28x28 single-channel cnn, width 32, batch 128
WORKLOAD_28 = {"model": {"arch": "cnn", "width": 32}, "train": {"batch_size": 128}}


def generated_data(tmp: Path, rows: int, seed: int) -> Data:
    """`rows` generated 28x28 images through the prepare stage (its split and scaling)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from compile_benchmark import generated_28x28

    from stages.prepare import stage as prepare

    source = generated_28x28(tmp / "g28.npz", n=rows, seed=seed)
    cfg = params(1, 1, overrides={"data": {"source": str(source)}})
    prepare.run(cfg, tmp / "g28", root=tmp)
    return Data(tmp / "g28", tmp / "g28")


def params(
    epochs: int | None,
    threads: int,
    ema: bool = True,
    accelerator: str = "cpu",
    precision: str = "32",
    overrides: dict | None = None,
    fit_on: str | None = "train",
) -> config.Params:
    """params.yaml with these settings; `fit_on: train` (the rows the plain loop sees)
    unless None (the shipped value, for the end-to-end run)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    train = raw.setdefault("train", {})
    train |= {"threads": threads, "progress_bar": "off", "use_tuned": False, "resume": False}
    if fit_on:
        train["fit_on"] = fit_on
    train |= {"accelerator": accelerator, "precision": precision}
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    if not ema:
        train.setdefault("ema", {})["enabled"] = False
    if epochs:
        train["max_epochs"] = epochs
    return config.validate(raw, ROOT / "params.yaml")


def plain_loop(
    cfg: config.Params, schema: dict, data: dict, epochs: int, fused: bool = True
) -> list[float]:
    """The loop a person would write by hand; returns seconds per epoch.

    `fused`: the optimizer kernel reprolab picks (the same as the other contenders); False
    is torch's constructor default on CPU (a per-tensor Python loop), what a hand-written
    `torch.optim.AdamW(net.parameters(), lr)` gets.

    On CUDA the data sits on the GPU (as reprolab's DataModule keeps it), `bf16-mixed` runs
    the forward pass under autocast, and each epoch's time waits for the queued kernels.
    """
    from lightning_modules.fit import resolve_accelerator
    from lightning_modules.networks import build_network
    from lightning_modules.optim import build_optimizer, build_scheduler

    device = torch.device(resolve_accelerator(cfg.train.accelerator))
    if cfg.train.precision not in ("32", "bf16-mixed"):
        raise SystemExit(f"plain loop: precision {cfg.train.precision!r} not supported here")
    autocast = torch.autocast(device.type, torch.bfloat16, cfg.train.precision == "bf16-mixed")
    torch.manual_seed(cfg.seed)
    args = module_args(cfg, schema)
    net = build_network(args["arch"], **args["net_kwargs"]).to(device)
    X = torch.from_numpy(data["X"]).float().to(device)
    y = torch.from_numpy(data["y"]).to(device)
    bs = cfg.train.batch_size
    steps = -(-len(X) // bs)
    opt = build_optimizer(net.parameters(), **args["optimizer"], fused=fused)
    sched = build_scheduler(
        opt, total_steps=epochs * steps, steps_per_epoch=steps, **args["scheduler"]
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
    gen = torch.Generator().manual_seed(cfg.seed)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(len(X), generator=gen).to(device)
        for i in range(steps):
            idx = order[i * bs : (i + 1) * bs]
            with autocast:
                loss = loss_fn(net(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def lightning_minimal_loop(
    cfg: config.Params, schema: dict, data: dict, tmp: Path, src: Data
) -> list[float]:
    """Bare Lightning: training_step = loss only; same Trainer settings as the stage."""
    import lightning as L

    from lightning_modules.callbacks import History
    from lightning_modules.data import TensorDataModule
    from lightning_modules.fit import build_trainer
    from lightning_modules.networks import build_network
    from lightning_modules.optim import build_optimizer, build_scheduler

    args = module_args(cfg, schema)
    epochs, smoothing = cfg.train.max_epochs, cfg.train.label_smoothing

    class Minimal(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = build_network(args["arch"], **args["net_kwargs"])

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y, label_smoothing=smoothing)

        def validation_step(self, batch, batch_idx):
            pass

        def configure_optimizers(self):
            opt = build_optimizer(self.parameters(), **args["optimizer"])
            total = int(self.trainer.estimated_stepping_batches)
            sched = build_scheduler(
                opt, total_steps=total, steps_per_epoch=total // epochs, **args["scheduler"]
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    L.seed_everything(cfg.seed, verbose=False)
    history = History()
    trainer = build_trainer(
        tmp,
        None,
        "max",
        epochs,
        accelerator=cfg.train.accelerator,
        precision=cfg.train.precision,
        deterministic=True,
        callbacks=[history],
    )
    val = src.split("val")
    dm = TensorDataModule(
        (data["X"], data["y"]), (val["X"], val["y"]), batch_size=cfg.train.batch_size, seed=cfg.seed
    )
    trainer.fit(Minimal(), datamodule=dm)
    return [r["train_seconds"] for r in history.rows]


def reprolab_loop(cfg, schema, tmp: Path, src: Data) -> tuple[list[float], dict]:
    paths = Paths.under(tmp, src.prepared, src.augmented)
    metrics = run(cfg, schema, paths)
    import csv

    with open(paths.history) as fh:
        times = [float(r["train_seconds"]) for r in csv.DictReader(fh)]
    return times, {"metrics": metrics, "paths": paths}


def startup(tmp: Path, threads: int, src: Data) -> float:
    """Seconds from `python -m stages.train` process start to its first training step."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"] |= {"max_epochs": 1, "threads": threads, "progress_bar": "off"}
    raw["data"]["source"] = "digits"
    (tmp / "params.yaml").write_text(yaml.safe_dump(raw))
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}")
    cmd = [
        sys.executable,
        "-m",
        "stages.train",
        "--params",
        str(tmp / "params.yaml"),
        "--prepared",
        str(src.prepared),
        "--augmented",
        str(src.augmented),
        "--tuned",
        str(tmp / "none.yaml"),
        "--checkpoints",
        str(tmp / "ck"),
        "--ckpt",
        str(tmp / "m.ckpt"),
        "--model",
        str(tmp / "m.pt"),
        "--metrics",
        str(tmp / "m.json"),
        "--history",
        str(tmp / "h.csv"),
    ]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return json.loads((tmp / "m.json").read_text())["startup_seconds"]


def test_accuracy(paths: Paths, src: Data) -> float:
    from lightning_modules.serialization import load_network, predict

    net, meta = load_network(paths.model)
    test = src.split("test")
    return float((predict(net, meta, test["X"]).argmax(1) == test["y"]).mean())


def profile(cfg, schema, tmp: Path, out: Path, src: Data) -> None:
    """Where reprolab's time goes: the top functions by own time over one run."""
    import cProfile
    import io as _io
    import pstats

    prof = cProfile.Profile()
    prof.runcall(reprolab_loop, cfg, schema, tmp, src)
    text = _io.StringIO()
    stats = pstats.Stats(prof, stream=text).sort_stats("tottime")
    stats.print_stats(40)
    stats.sort_stats("cumulative").print_stats(60)
    out.write_text(text.getvalue())


def measure(a, tmp: Path, src: Data, overrides: dict) -> dict[str, list[float]]:
    """Alternate the contenders `a.repeats` times; epochs after each run's first, per name."""
    schema = src.schema()
    cfg = params(a.epochs, a.threads, accelerator=a.accelerator, overrides=overrides)
    no_ema = params(a.epochs, a.threads, False, a.accelerator, overrides=overrides)
    data = src.train(cfg)
    runs = {
        "plain": lambda r: plain_loop(cfg, schema, data, a.epochs),
        "stock": lambda r: plain_loop(cfg, schema, data, a.epochs, fused=False),
        "reprolab": lambda r: reprolab_loop(cfg, schema, tmp / f"r{r}", src)[0],
        "bare": lambda r: lightning_minimal_loop(cfg, schema, data, tmp / f"m{r}", src),
        "no_ema": lambda r: reprolab_loop(no_ema, schema, tmp / f"n{r}", src)[0],
    }
    print(
        f"model={cfg.model.arch} width={cfg.model.width} depth={cfg.model.depth} "
        f"batch={cfg.train.batch_size} rows={len(data['y'])} threads={a.threads} "
        f"accelerator={a.accelerator} load={os.getloadavg()[0]:.2f}",
        flush=True,
    )
    times: dict[str, list[float]] = {name: [] for name in a.contenders}
    for r in range(a.repeats):
        for name in a.contenders:
            times[name] += runs[name](r)[1:]
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return times


def report(times: dict[str, list[float]]) -> None:
    """The ratios between whichever contenders ran (medians; fastest epochs in brackets)."""
    med = {name: statistics.median(t) for name, t in times.items()}
    fast = {name: min(t) for name, t in times.items()}
    n = len(next(iter(times.values())))
    print(f"median epoch of {n} epochs each (first epoch of each run dropped):")
    for name in times:
        print(f"  {name:9s} {med[name]:.4f}s (fastest {fast[name]:.4f}s)")
    pairs = [
        ("reprolab", "plain"), ("bare", "plain"), ("reprolab", "bare"), ("no_ema", "plain"),
        ("no_ema", "bare"), ("reprolab", "no_ema"), ("reprolab", "stock"), ("plain", "stock"),
    ]  # fmt: skip
    for top, bottom in pairs:
        if top in med and bottom in med:
            print(
                f"  ratio {top}/{bottom} = {med[top] / med[bottom]:.3f} "
                f"(fastest {fast[top] / fast[bottom]:.3f})"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workload", choices=("digits", "28x28"), default="digits")
    ap.add_argument("--rows", type=int, default=10_000, help="28x28: generated images")
    ap.add_argument(
        "--contenders",
        type=lambda text: text.split(","),
        default=list(CONTENDERS),
        help=f"comma-separated, run in this order each repeat: {','.join(CONTENDERS)}",
    )
    ap.add_argument("--data", type=Path, help="folder with prepared/ and augmented/ (digits)")
    ap.add_argument("--full", action="store_true", help="also train the defaults end to end")
    ap.add_argument("--accelerator", default="cpu", help="cpu | cuda (all contenders alike)")
    ap.add_argument("--no-startup", action="store_true", help="skip the start-up subprocess")
    ap.add_argument("--profile", metavar="FILE", help="also cProfile one reprolab run into FILE")
    a = ap.parse_args()
    unknown = sorted(set(a.contenders) - set(CONTENDERS))
    if unknown:
        ap.error(f"--contenders: unknown {unknown}; choose from {', '.join(CONTENDERS)}")
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if a.workload == "28x28":
            src, overrides = generated_data(tmp, a.rows, seed=0), WORKLOAD_28
        else:
            src, overrides = digits_data(a.data, tmp), {}
        report(measure(a, tmp, src, overrides))
        cfg = params(a.epochs, a.threads, accelerator=a.accelerator, overrides=overrides)
        if a.profile:
            profile(cfg, src.schema(), tmp / "profiled", Path(a.profile), src)
        if a.workload != "digits":
            return
        if not a.no_startup:
            print(f"startup process_start->first_step={startup(tmp, a.threads, src):.2f}s")
        if a.full:
            t0 = time.perf_counter()
            full = params(None, a.threads, accelerator=a.accelerator, fit_on=None)
            _, out = reprolab_loop(full, src.schema(), tmp / "full", src)
            wall = time.perf_counter() - t0
            print(
                f"default_params epochs={out['metrics']['epochs']} fit_wall={wall:.1f}s "
                f"test_acc={test_accuracy(out['paths'], src):.4f} "
                f"val_acc={out['metrics'].get('val/acc')}"
            )


if __name__ == "__main__":
    main()
