"""Serving costs: pyfunc wrapper overhead, predict CLI throughput and memory, HTTP latency.

Builds the served models it measures: a repo copy per data set (the shipped houses.csv
table, the shipped shapes image folder), `dvc repro package` with the default params
(tune off, to keep the build short), then:

1. wrapper overhead: `pyfunc.predict` on 256 raw rows (MLflow's signature check, the
   preprocessing, the candidate, the answer frame) / the bare candidate's own predict on
   the same 256 rows already preprocessed; median of --repeats calls each, side by side;
   for the winner and for each other candidate kind (network, ONNX INT8, baseline);
2. `python -m stages.predict` over 10^5 and 10^6 generated CSV rows: rows/s and peak RSS
   (the child's own, from wait4's ru_maxrss);
3. `mlflow models serve`: p50/p99 latency of one-row POST /invocations on loopback.

    .venv/bin/python benchmarks/serve_benchmark.py [--rows 100000 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import copy_repo, deep_update, pipeline_env  # noqa: E402

HOUSES = "data/raw/examples/houses.csv"
DATASETS = {
    "table": {"data": {"source": HOUSES, "target": "sold_fast"}, "model": {"arch": "mlp"}},
    "image": {"data": {"source": "data/raw/examples/shapes", "image_size": [16, 16]}},
}
COMMON = {"tune": {"enabled": False}}


def build(name: str, root: Path) -> tuple[Path, dict[str, str]]:
    env = pipeline_env(root / name)
    if (root / name / "models" / "serving" / "MLmodel").exists():  # --keep: reuse the build
        return root / name, env
    repo = copy_repo(root / name)
    path = repo / "params.yaml"
    raw = deep_update(yaml.safe_load(path.read_text()), {**COMMON, **DATASETS[name]})
    raw["data"] = {**raw["data"], **DATASETS[name]["data"]}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dvc", "repro", "package"], cwd=repo, env=env,
                   check=True, capture_output=True)  # fmt: skip
    print(f"{name}: pipeline built in {time.perf_counter() - start:.0f}s", flush=True)
    return repo, env


def raw_rows(name: str, repo: Path, n: int, seed: int = 0):
    """n raw inputs as a user has them: table rows (resampled) or image file paths."""
    rng = np.random.default_rng(seed)
    if name == "table":
        frame = pd.read_csv(repo / HOUSES).drop(columns=["sold_fast"])
        return frame.iloc[rng.integers(0, len(frame), n)].reset_index(drop=True)
    files = sorted(str(p) for p in (repo / "data/raw/examples/shapes").rglob("*.png"))
    return pd.DataFrame({"image": [files[i] for i in rng.integers(0, len(files), n)]})


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def overhead(name: str, repo: Path, env: dict[str, str], repeats: int) -> list[dict]:
    import mlflow

    board = json.loads((repo / "metrics/leaderboard.json").read_text())
    kinds = {board["best"]: "winner"}
    for cand, kind in json.loads((repo / "reports/evaluation.json").read_text())["kinds"].items():
        want = {"network": "network", "baseline": "baseline"}.get(kind)
        if cand.startswith("int8"):
            want = "int8"
        if want and want not in kinds.values():
            kinds[cand] = want
    rows = raw_rows(name, repo, 256)
    out = []
    for cand, role in kinds.items():
        folder = repo / f"served-{cand}"
        params = repo / f"params-{cand}.yaml"
        raw = yaml.safe_load((repo / "params.yaml").read_text())
        raw["serve"] = {**raw["serve"], "candidate": cand, "registry": False}
        params.write_text(yaml.safe_dump(raw))
        subprocess.run([sys.executable, "-m", "stages.package", "--params", str(params),
                        "--out", str(folder), "--metrics", str(repo / f"m-{cand}.json")],
                       cwd=repo, env=env, check=True, capture_output=True)  # fmt: skip
        model = mlflow.pyfunc.load_model(str(folder))
        out.append(_ratios(name, cand, role, model, rows, repeats))
        print(json.dumps(out[-1]), flush=True)
    return out


def _ratios(name, cand, role, model, rows, repeats) -> dict:
    runtime = model.unwrap_python_model()
    X = runtime.prepared(rows)
    bare = _median_ms(lambda: runtime.candidate.predict(X), repeats)
    wrapped = _median_ms(lambda: model.predict(rows), repeats)
    prep = _median_ms(lambda: runtime.prepared(rows), repeats)
    return {
        "data": name,
        "candidate": cand,
        "role": role,
        "kind": runtime.spec.kind,
        "bare_ms": bare,
        "pyfunc_ms": wrapped,
        "preprocess_ms": prep,
        "ratio": wrapped / bare,
    }


def cli(repo: Path, env: dict[str, str], n: int, tmp: Path) -> dict:
    csv = tmp / f"rows-{n}.csv"
    frame = raw_rows("table", repo, 100_000)
    with open(csv, "w") as fh:
        for start in range(0, n, len(frame)):
            frame.head(min(len(frame), n - start)).to_csv(fh, index=False, header=start == 0)
    out = tmp / f"pred-{n}.csv"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "stages.predict", "--model",
                             str(repo / "models/serving"), "--input", str(csv), "--out", str(out)],
                            cwd=repo, env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    peak = _peak_rss(proc)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    assert status == 0, proc.stderr.read()
    with open(out) as fh:
        lines = sum(1 for _ in fh) - 1
    assert lines == n, (lines, n)
    result = {
        "rows": n,
        "seconds": seconds,
        "rows_per_s": n / seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # the kernel's own peak for the child
        "sampled_peak_rss_mb": peak / 2**20,  # psutil, every 20 ms: a cross-check
        "csv_mb": csv.stat().st_size / 2**20,
    }
    print(json.dumps(result), flush=True)
    csv.unlink()
    return result


def _peak_rss(proc: subprocess.Popen) -> int:
    import psutil

    child, peak = psutil.Process(proc.pid), 0
    while True:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                return peak
            peak = max(peak, child.memory_info().rss)
        except psutil.NoSuchProcess:
            return peak
        time.sleep(0.02)


def http(repo: Path, env: dict[str, str], requests: int) -> dict:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
         str(repo / "models/serving"), "--env-manager", "local", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        row = raw_rows("table", repo, 1)
        body = json.dumps(
            {"dataframe_split": json.loads(row.to_json(orient="split", index=False))}
        ).encode()
        times = []
        for i in range(requests + 10):
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
            if i >= 10:  # warm-up
                times.append(1000 * (time.perf_counter() - t))
        result = {"requests": requests, "p50_ms": float(np.percentile(times, 50)),
                  "p99_ms": float(np.percentile(times, 99))}  # fmt: skip
        print(json.dumps(result), flush=True)
        return result
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--keep", type=Path, help="build the repos here and keep (and reuse) them")
    ap.add_argument("--skip-overhead", action="store_true", help="only the CLI and HTTP parts")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="serve-bench-"))
    try:
        built = {name: build(name, root) for name in DATASETS}
        results = {"overhead": [], "cli": [], "http": None}
        for name, (repo, env) in built.items():
            if not args.skip_overhead:
                results["overhead"] += overhead(name, repo, env, args.repeats)
        repo, env = built["table"]
        results["cli"] = [cli(repo, env, n, root) for n in args.rows]
        results["http"] = http(repo, env, args.requests)
        rss = [r["peak_rss_mb"] for r in results["cli"]]
        results["rss_ratio_last_first"] = rss[-1] / rss[0]
        first, last = results["cli"][0], results["cli"][-1]
        results["steady_rows_per_s"] = (last["rows"] - first["rows"]) / (
            last["seconds"] - first["seconds"]
        )  # start-up (imports, model load) cancels out
        print(json.dumps(results, indent=2))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
