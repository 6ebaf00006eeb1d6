"""Default baselines at scale: fit seconds, val score with a 95% CI and .skops size, old vs new.

Sets (seeded): `images` 5,000 + 1,000 val 1x28x28 images (sklearn digits upsampled, shifted,
Gaussian noise), `table_cls` 50,000 + 5,000 val rows (8 numeric, 4 categorical columns,
one-hot encoded, 4 quantile classes of a Friedman-style target), `table_reg` 54,000 + 6,000
val rows (the same columns, the target itself), and `digits`
(sklearn's 1,797, a seeded stratified 85/15 split, pixels scaled as the prepare stage does).
"old" = the hyperparameters before issue #19 (`baselines.n_threads: 1`, no row caps); "new"
= params.yaml through the stage's own `fit`, row caps and `max_model_mb`. Each fit runs in a
child process, stopped after `--timeout` s. Prints a Markdown table; `--json` keeps the rows.

    python benchmarks/baselines_scaling.py [--sets images table_reg] [--settings old new]
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages import config  # noqa: E402
from stages.baselines import cores, rows, size_budget  # noqa: E402
from stages.baselines import stage as baselines  # noqa: E402
from stages.evaluate.bootstrap import confidence_interval  # noqa: E402
from stages.schema.baselines import DEFAULT_MODELS, ESTIMATORS, make_estimator  # noqa: E402

OLD = {
    "decision_tree_gini": {"max_depth": None, "min_samples_leaf": 1},
    "decision_tree_entropy": {"max_depth": None, "min_samples_leaf": 1},
    "decision_tree": {"max_depth": None, "min_samples_leaf": 5},
    "random_forest": {"n_estimators": 200, "max_features": "sqrt"},
    "hist_gradient_boosting": {"max_iter": 100, "learning_rate": 0.1},
    "logreg_l1": {"C": 1.0, "max_iter": 1000},
    "logreg_l2": {"C": 1.0, "max_iter": 1000},
    "knn": {"n_neighbors": 5},
    "svc_rbf": {"C": 1.0, "gamma": "scale"},
    "ridge": {"alpha": 1.0},
    "lasso": {"alpha": 0.1, "max_iter": 5000},
    "elasticnet": {"alpha": 0.1, "l1_ratio": 0.5, "max_iter": 5000},
}


def images(seed: int, n: int = 6000, val: int = 1000):
    from scipy import ndimage
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    d = load_digits()
    idx = rng.integers(0, len(d.target), n)
    up = ndimage.zoom(d.images[idx] / 16.0, (1, 3.5, 3.5), order=1)  # (N, 28, 28)
    shifts = rng.integers(-2, 3, size=(n, 2))
    X = np.stack([np.roll(im, tuple(s), axis=(0, 1)) for im, s in zip(up, shifts, strict=True)])
    X = np.clip(X + rng.normal(0, 0.15, X.shape), 0, 1).astype(np.float32).reshape(n, -1)
    y = d.target[idx]
    return X[:-val], y[:-val], X[-val:], y[-val:]


def table(seed: int, task: str, n: int, val: int):
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(seed)
    num = rng.normal(size=(n, 8))
    cats = {f"c{j}": rng.integers(0, k, n) for j, k in enumerate((3, 5, 12, 30))}
    f = 10 * np.sin(np.pi * num[:, 0] * num[:, 1]) + 5 * (num[:, 2] - 0.5) ** 2
    f += 5 * num[:, 3] + 3 * num[:, 4] * (cats["c0"] == 1)
    f += sum(2 * rng.normal(0, 1, int(v.max()) + 1)[v] for v in cats.values())
    f += rng.normal(0, 2.0, n)
    y = np.digitize(f, np.quantile(f, [0.25, 0.5, 0.75])) if task == "classification" else f
    frame = pd.DataFrame(num, columns=[f"x{i}" for i in range(8)])
    for c, v in cats.items():
        frame[c] = pd.Categorical([f"{c}_{x}" for x in v])
    enc = ColumnTransformer(
        [
            ("num", StandardScaler(), [f"x{i}" for i in range(8)]),
            ("cat", OneHotEncoder(sparse_output=False, dtype=np.float32), list(cats)),
        ]
    )  # as the prepare stage's defaults: standard scaling, one-hot
    Xtr = enc.fit_transform(frame.iloc[:-val]).astype(np.float32)
    return Xtr, y[:-val], enc.transform(frame.iloc[-val:]).astype(np.float32), y[-val:]


def digits(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X, y = (d.images / 16.0).reshape(len(d.target), -1).astype(np.float32), d.target
    Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=0.15, stratify=y, random_state=seed)
    return Xtr, ytr, Xva, yva


SETS = {
    "images": ("classification", lambda s: images(s)),
    "table_cls": ("classification", lambda s: table(s, "classification", 55_000, 5_000)),
    "table_reg": ("regression", lambda s: table(s, "regression", 60_000, 6_000)),
    "digits": ("classification", digits),
}


def _one(setting, name, task, data, cfg, modality, queue) -> None:
    import skops.io as sio

    Xtr, ytr, Xva, yva = data
    if setting == "old":
        est = make_estimator(name, task, OLD.get(name, {}), seed=cfg.seed)
        threads = cores.Threads(1, 1)
    else:
        hp = cfg.baselines.hyperparams.get(name, {})
        est = make_estimator(name, task, hp, seed=cfg.seed, modality=modality)
        threads = cores.threads(cfg.baselines.n_threads, cores.FreeCores())
        n = rows.cap(cfg.baselines, name)
        if n is not None and n < len(ytr):
            keep = rows.sample(ytr, n, task, cfg.seed)
            Xtr, ytr = Xtr[keep], ytr[keep]
    budget = cfg.baselines.max_model_mb if setting == "new" else None
    start = time.perf_counter()
    fit = functools.partial(baselines.fit, threads=threads)
    model, _ = size_budget.grow_within(est, Xtr, ytr, budget, fit, name)  # as the stage fits
    fit_s = time.perf_counter() - start
    pred = model.predict(Xva)
    with tempfile.TemporaryDirectory() as tmp:
        sio.dump(model, Path(tmp) / "m.skops")
        size = (Path(tmp) / "m.skops").stat().st_size
    queue.put(
        {"fit_s": fit_s, "pred": pred, "rows": len(ytr), "mb": size / 2**20, "threads": threads.n}
    )


def measure(setting, name, task, data, cfg, timeout, modality) -> dict:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_one, args=(setting, name, task, data, cfg, modality, queue))
    proc.start()
    try:
        out = queue.get(timeout=timeout)
    except Exception:  # queue.Empty: the fit ran past the timeout
        proc.kill()
        proc.join()
        return {
            "fit_s": None,
            "score": None,
            "ci": None,
            "mb": None,
            "rows": len(data[1]),
            "threads": None,
        }
    proc.join()
    yva, pred = data[3], out.pop("pred")
    metric = "accuracy" if task == "classification" else "r2"
    if metric == "accuracy":
        out["score"] = float(np.mean(pred == yva))
    else:
        out["score"] = float(1 - np.sum((yva - pred) ** 2) / np.sum((yva - yva.mean()) ** 2))
    out["ci"] = confidence_interval(metric, yva, pred, seed=cfg.seed)
    return out


def _cell(r: dict | None, key: str, fmt: str) -> str:
    if r is None:
        return "-"  # setting not run
    return "stopped" if r[key] is None else format(r[key], fmt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--settings", nargs="+", default=["old", "new"], choices=["old", "new"])
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--timeout", type=float, default=240.0, help="s before a fit is stopped")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    cfg = config.load(REPO / "params.yaml")
    table_rows, lines = [], []
    print("| set | model | rows | fit s old | fit s new | threads new | val old [95% CI] | "
          "val new | MB old | MB new |\n|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
          flush=True)  # fmt: skip
    for set_name in args.sets:
        task, make = SETS[set_name]
        data = make(cfg.seed)
        for name in args.models:
            if task not in ESTIMATORS[name]:
                continue
            modality = "table" if set_name.startswith("table") else "image"  # as prepare says
            res = {
                s: measure(s, name, task, data, cfg, args.timeout, modality) for s in args.settings
            }
            table_rows.append({"set": set_name, "model": name, **res})
            old, new = res.get("old"), res.get("new")
            ci = "" if not old or old["ci"] is None else " [{:.3f}, {:.3f}]".format(*old["ci"])
            line = (
                f"| {set_name} | {name} | {(new or old)['rows']:,} | "
                f"{_cell(old, 'fit_s', '.2f')} | {_cell(new, 'fit_s', '.2f')} | "
                f"{_cell(new, 'threads', 'd')} | "
                f"{_cell(old, 'score', '.4f')}{ci} | {_cell(new, 'score', '.4f')} | "
                f"{_cell(old, 'mb', '.1f')} | {_cell(new, 'mb', '.1f')} |"
            )
            lines.append(line)
            print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(table_rows, indent=1, default=float))


if __name__ == "__main__":
    main()
