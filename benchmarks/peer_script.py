"""The peer: what a user writes instead of reprolab's tune + train stages.

One plain script: a small CNN in Lightning, an Optuna study (TPE sampler, MedianPruner)
over the same search space, trial budget and epochs per trial as params.yaml's `tune:`,
MLflow autologging (`mlflow.pytorch.autolog`: params and per-epoch metrics; every trial's
model only with `--log-models`, autolog's default) into a sqlite store, then the best
config trained for `train.max_epochs` epochs on train+val and scored on the test split.

It reads the prepare stage's split (`prepared/{train,val,test}.npz`), so both sides see
the same rows; `--augmented DIR` trains on the augment stage's rows instead, as reprolab's
trials and final fit do by default (`train.use_augmented: true`).

    python benchmarks/peer_script.py --prepared DIR [--augmented DIR] [--mlflow-db FILE]
    python benchmarks/peer_script.py --against-reprolab [--rounds 1] [--first-round 0]

Prints one JSON line: wall seconds (search, final fit, total), best val accuracy, the best
params and the test accuracy. `--against-reprolab` makes the digits data with the prepare
and augment stages in a temporary folder, then runs, `--rounds` times (odd rounds in the
reverse order, so background load hits both alike): reprolab's
`python -m stages.tune` + `python -m stages.train` (the dvc.yaml commands, in a fresh
copy of params.yaml, MLflow into sqlite), and this script as a subprocess, once on the
prepared rows and once on the augmented ones.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import optuna
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]


class Pruning(L.Callback):
    """Report val_acc each epoch; stop when the pruner says so (optuna-integration's
    PyTorchLightningPruningCallback, which is not installed here, does the same)."""

    def __init__(self, trial: optuna.Trial):
        self.trial, self.pruned = trial, False

    def on_validation_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get("val_acc")
        if value is None:
            return
        self.trial.report(float(value), trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = trainer.should_stop = True


class Net(L.LightningModule):
    """conv-bn-relu-pool blocks (width, then 2x width), dropout, linear: the default cnn."""

    def __init__(self, shape, n_classes, width, dropout, lr, weight_decay, smoothing, epochs):
        super().__init__()
        self.save_hyperparameters()
        c, h, _ = shape
        blocks, c_in = [], c
        for c_out in (width, 2 * width):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
            blocks += [nn.ReLU(), nn.MaxPool2d(2)]
            c_in, h = c_out, h // 2
        self.net = nn.Sequential(
            *blocks, nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in * h * h, n_classes)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y, label_smoothing=self.hparams.smoothing)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, hp.lr, total_steps=int(self.trainer.estimated_stepping_batches), pct_start=0.25
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def loader(X, y, batch_size, shuffle, seed=0):
    data = TensorDataset(torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y))
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=gen)


def fit(cfg, splits, train_rows, epochs, callbacks=(), val=True):
    """Train one Net on `train_rows`; returns (trainer, model)."""
    L.seed_everything(cfg["seed"], verbose=False)
    X, y = train_rows
    model = Net(
        splits["shape"],
        splits["n_classes"],
        cfg["model.width"],
        cfg["model.dropout"],
        cfg["train.optimizer.lr"],
        cfg["train.optimizer.weight_decay"],
        cfg["train.label_smoothing"],
        epochs,
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        callbacks=list(callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    vx, vy = splits["val"]
    trainer.fit(
        model,
        loader(X, y, cfg["batch_size"], shuffle=True, seed=cfg["seed"]),
        loader(vx, vy, 256, shuffle=False) if val else None,
    )
    return trainer, model


def stage(case: Path, name: str, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CI="1")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{case / 'mlflow.db'}"
    cmd = [sys.executable, "-m", f"stages.{name}", "--params", "params.yaml", *args]
    subprocess.run(cmd, cwd=case, env=env, check=True, capture_output=True)


def reprolab(case: Path, data: Path) -> dict:
    """tune + train, as `dvc repro tune train` runs them, in a fresh folder `case`."""
    case.mkdir()
    shutil.copy(ROOT / "params.yaml", case / "params.yaml")
    for name in ("prepared", "augmented"):
        shutil.copytree(data / name, case / "data" / name)
    t0 = time.perf_counter()
    stage(case, "tune", "--prepared", "data/prepared", "--augmented", "data/augmented",
          "--out", "tuning", "--metrics", "metrics/tune.json")  # fmt: skip
    t1 = time.perf_counter()
    stage(case, "train", "--prepared", "data/prepared", "--augmented", "data/augmented",
          "--tuned", "tuning/best_params.yaml", "--checkpoints", "models/checkpoints",
          "--ckpt", "models/model.ckpt", "--model", "models/model.pt",
          "--metrics", "metrics/train.json", "--history", "plots/train_history.csv")  # fmt: skip
    t2 = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from lightning_modules.serialization import load_network, predict

    net, meta = load_network(case / "models/model.pt")
    test = np.load(data / "prepared/test.npz")
    tuned = json.loads((case / "metrics/tune.json").read_text())
    return {
        "search_seconds": round(t1 - t0, 1),
        "final_fit_seconds": round(t2 - t1, 1),
        "total_seconds": round(t2 - t0, 1),
        "best_val_acc": tuned.get("best_value"),
        "best_params": yaml.safe_load((case / "tuning/best_params.yaml").read_text()),
        "test_acc": float((predict(net, meta, test["X"]).argmax(1) == test["y"]).mean()),
    }


def against_reprolab(rounds: int, first: int = 0) -> None:
    with tempfile.TemporaryDirectory(prefix="peer-vs-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        shutil.copy(ROOT / "params.yaml", data / "params.yaml")
        stage(data, "prepare", "--out", "prepared")
        stage(data, "augment", "--prepared", "prepared", "--out", "augmented")
        for r in range(first, first + rounds):
            print(f"round {r} load={os.getloadavg()[0]:.2f}", flush=True)
            if r % 2 == 0:  # odd rounds run reprolab last: background load hits both alike
                print("reprolab " + json.dumps(reprolab(tmp / f"reprolab-{r}", data)), flush=True)
            for rows in ("prepared", "augmented"):
                cmd = [sys.executable, __file__, "--prepared", str(data / "prepared")]
                if rows == "augmented":
                    cmd += ["--augmented", str(data / "augmented")]
                t0 = time.perf_counter()
                out = subprocess.run(cmd, check=True, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                print(f"peer-{rows} process_wall={wall:.1f} {out.stdout.strip().splitlines()[-1]}")
            if r % 2 == 1:
                print("reprolab " + json.dumps(reprolab(tmp / f"reprolab-{r}", data)), flush=True)
            print(f"load after round {r}: {os.getloadavg()[0]:.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepared", type=Path)
    ap.add_argument("--augmented", type=Path, help="train on these rows (augment stage)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--mlflow-db", type=Path, help="sqlite file (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--log-models",
        action="store_true",
        help="autolog's default: log every trial's model (about 25 s each here)",
    )
    ap.add_argument("--against-reprolab", action="store_true")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--first-round", type=int, default=0, help="1: start with reprolab last")
    args = ap.parse_args()
    if args.against_reprolab:
        against_reprolab(args.rounds, args.first_round)
        return
    if args.prepared is None:
        ap.error("--prepared is required (or --against-reprolab)")
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = yaml.safe_load(args.params.read_text())
    tune, train = params["tune"], params["train"]
    load = lambda folder, name: np.load(folder / f"{name}.npz")  # noqa: E731
    splits = {name: load(args.prepared, name) for name in ("train", "val", "test")}
    splits = {name: (s["X"], s["y"]) for name, s in splits.items()}
    fit_from = load(args.augmented, "train") if args.augmented else None
    train_rows = (fit_from["X"], fit_from["y"]) if fit_from is not None else splits["train"]
    splits |= {
        "shape": splits["train"][0].shape[1:],
        "n_classes": int(splits["train"][1].max()) + 1,
    }

    tmp = tempfile.mkdtemp(prefix="peer-")
    db = args.mlflow_db or Path(tmp) / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    mlflow.set_experiment("peer-digits")
    mlflow.pytorch.autolog(log_models=args.log_models)
    base = {"seed": params["seed"], "batch_size": train["batch_size"]}

    def objective(trial: optuna.Trial) -> float:
        cfg = dict(base)
        for name, d in tune["search_space"].items():
            if d["type"] == "categorical":
                cfg[name] = trial.suggest_categorical(name, d["choices"])
            elif d["type"] == "int":
                cfg[name] = trial.suggest_int(name, d["low"], d["high"], log=d.get("log", False))
            else:
                cfg[name] = trial.suggest_float(name, d["low"], d["high"], log=d.get("log", False))
        pruning = Pruning(trial)
        with mlflow.start_run(run_name=f"trial-{trial.number}"):
            trainer, _ = fit(cfg, splits, train_rows, tune["max_epochs"], [pruning])
        if pruning.pruned:
            raise optuna.TrialPruned()
        return float(trainer.callback_metrics["val_acc"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(
            seed=params["seed"], n_startup_trials=tune["n_startup_trials"]
        ),
        pruner=optuna.pruners.MedianPruner(),
    )
    study.optimize(objective, n_trials=tune["n_trials"])
    searched = time.perf_counter()

    cfg = base | study.best_params
    X = np.concatenate([train_rows[0], splits["val"][0]])
    y = np.concatenate([train_rows[1], splits["val"][1]])
    with mlflow.start_run(run_name="final"):
        _, model = fit(cfg, splits, (X, y), train["max_epochs"], val=False)
    model.eval()
    tx, ty = splits["test"]
    with torch.inference_mode():
        pred = model.net(torch.as_tensor(tx, dtype=torch.float32)).argmax(1).numpy()
    done = time.perf_counter()
    states = [t.state.name for t in study.trials]
    print(
        json.dumps(
            {
                "search_seconds": round(searched - started, 1),
                "final_fit_seconds": round(done - searched, 1),
                "total_seconds": round(done - started, 1),
                "best_val_acc": study.best_value,
                "best_params": study.best_params,
                "trials": {s: states.count(s) for s in set(states)},
                "test_acc": float((pred == ty).mean()),
                "fit_rows": {"trials": len(train_rows[1]), "final": len(y)},
            }
        )
    )


if __name__ == "__main__":
    main()
