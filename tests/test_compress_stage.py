"""The compress stage for real: `dvc repro compress` on tiny params, nested MLflow runs,
variant files evaluate can load, and the table's rows."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from stages.common import splits
from tests.conftest import pipeline_env, run_dvc, start_stage, write_params

pytestmark = pytest.mark.integration

TINY = {
    "augment": {"enabled": False},
    "model": {"arch": "cnn", "width": 8, "depth": 2},
    "train": {"max_epochs": 2, "batch_size": 64, "scheduler": {"name": "cosine"}},
    "tune": {"enabled": False},
    "compress": {
        "unstructured": {"sparsities": [0.5], "finetune_epochs": 1},
        "structured": {"finetune_epochs": 1},
        "distill": {"epochs": 1, "width": 4},
        "latency": {"repeats": 3, "warmup": 1, "budget_s": 0.2},
        # decided without timing, so the re-run below writes the same graph on a busy machine
        "quantize": {"fp32_input_conv": "always"},
    },
    "mlflow": {"experiment": "compress-test"},
}


def _repro(repo: Path, env: dict, *args: str) -> None:
    run_dvc(repo, env, "repro", *args, "compress")


def test_repro_compress_writes_variants_table_and_nested_runs(repo_copy, tmp_path, reliability):
    env = pipeline_env(tmp_path)
    write_params(repo_copy, TINY)
    _repro(repo_copy, env)

    rows = json.loads((repo_copy / "metrics/compression.json").read_text())
    expected = {
        "original",
        "onnx_fp32",
        "prune_l1_50",
        "structured_l1_50",
        "int8_dynamic",
        "int8_static_minmax",
        "student_distilled",
        "student_scratch",
    }
    assert set(rows) == expected
    assert all(r["status"] == "ok" for r in rows.values()), rows
    for row in rows.values():
        assert row["latency_ms_b1_p50"] <= row["latency_ms_b1_p90"]
        assert row["latency_ms_b256_p50"] > 0 and row["bytes"] > 0
        assert 0.0 <= row["val_acc"] <= 1.0
    assert rows["prune_l1_50"]["layer_sparsity"]["global"] == pytest.approx(0.5, abs=1e-3)
    assert rows["structured_l1_50"]["params"] < rows["original"]["params"]
    assert rows["onnx_fp32"]["onnx_max_abs_diff"] < 1e-4
    csv_lines = (repo_copy / "plots/compression.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(expected)

    # every file loads the way evaluate loads it, and maps val rows to (B, K) scores
    from lightning_modules.quantize import run_onnx, session
    from lightning_modules.serialization import load_network, predict

    X = splits.head(repo_copy / "data/prepared/val", 5)
    out_dir = repo_copy / "models/compressed"
    stems = {p.stem for p in out_dir.iterdir()}
    assert stems == expected - {"original"}
    for path in out_dir.iterdir():
        if path.suffix == ".pt":
            net, meta = load_network(path)
            assert predict(net, meta, X).shape == (5, 10)
        else:
            assert run_onnx(session(path), X).shape == (5, 10)

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("compress-test")
    (parent,) = client.search_runs([exp.experiment_id], "tags.stage = 'compress'")
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert {c.data.tags["variant"] for c in children} == expected - {"original"}
    assert all(c.info.status == "FINISHED" for c in children)
    _, meta = load_network(out_dir / "student_distilled.pt")
    assert meta["mlflow_run_id"] in {c.info.run_id for c in children}

    again = run_dvc(repo_copy, env, "status", "compress", check=False, timeout=120)
    assert "changed" not in again.stdout, again.stdout

    # Fault: SIGTERM while the compress stage works on its variants (a changed param makes
    # it run again). Expected: exit 143, the stage run and the interrupted variant's run
    # KILLED, none RUNNING; the earlier complete outputs untouched, no temp dir left.
    import signal
    import time

    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    table = (repo_copy / "metrics/compression.json").read_bytes()
    write_params(repo_copy, {"compress": {"distill": {"epochs": 2}}})
    proc = start_stage("compress", repo_copy, env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        runs = client.search_runs([exp.experiment_id], "tags.stage = 'compress-variant'")
        if len(runs) > len(children) + 1:  # past the first variant of the second run
            break
        time.sleep(0.2)
    assert proc.poll() is None, "compress ended before the signal"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in stderr, stderr[-3000:]
    statuses = [r.info.status for r in client.search_runs([exp.experiment_id])]
    assert "RUNNING" not in statuses and statuses.count("KILLED") >= 2, statuses
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    assert (repo_copy / "metrics/compression.json").read_bytes() == table
    assert not [p for p in (repo_copy / "models").iterdir() if ".tmp-" in p.name]

    # Resume: the first run's params again, forced through dvc: every variant comes out as
    # the uninterrupted run made it (the metric, the parameter counts; latency aside).
    write_params(repo_copy, TINY)
    _repro(repo_copy, env, "-f", "-s")
    again = json.loads((repo_copy / "metrics/compression.json").read_text())
    first = json.loads(table)
    kept = ("status", "params", "nonzero_params", "val_acc")
    for name, row in first.items():
        for key in kept:
            assert again[name].get(key) == pytest.approx(row.get(key), abs=1e-6), (name, key)
    reliability.record(
        "fault",
        "SIGTERM to `stages.compress` after its first variant, then `dvc repro -f -s compress`",
        "exit 143, no traceback; stage and variant runs KILLED, none RUNNING; earlier "
        "outputs byte-identical, no temp dir; the re-run's variants equal the uninterrupted "
        "run's (val metric, params, non-zero params)",
        before={"variants": len(first), "runs KILLED": 0},
        after={
            "runs KILLED": statuses.count("KILLED"),
            "runs RUNNING": statuses.count("RUNNING"),
            "variants equal after re-run": f"{len(again)}/{len(first)}",
        },
    )
