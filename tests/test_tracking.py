"""MLflow tracking: lineage tags, statuses on success/failure/signals, orphan clean-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest

from stages.runtime import tracking

REPO = Path(__file__).resolve().parents[1]


def _runs(uri: str):
    client = mlflow.MlflowClient(uri)
    exps = client.search_experiments()
    return client.search_runs([e.experiment_id for e in exps])


def test_successful_run_is_tagged_and_finished(make_params, mlflow_uri):
    cfg = make_params()
    with tracking.stage_run(
        "prepare", cfg, ("seed", "data"), dataset="digits", data_fingerprint="sha256:abc"
    ):
        mlflow.log_metric("x", 1.0)
    (run,) = _runs(mlflow_uri)
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert tags["stage"] == "prepare" and tags["data_fingerprint"] == "sha256:abc"
    assert len(tags["params_hash"]) == 16 and tags["pipeline_id"]
    assert tags["git_commit"] and tags["git_dirty"] in ("true", "false", "unknown")
    assert run.data.params["data.source"] == "digits"
    assert run.data.params["data.synthetic.n_classes"] == "3"


def test_exception_marks_failed(make_params, mlflow_uri):
    with pytest.raises(ValueError), tracking.stage_run("augment", make_params(), ("augment",)):
        raise ValueError("boom")
    assert [r.info.status for r in _runs(mlflow_uri)] == ["FAILED"]


def test_keyboard_interrupt_marks_killed(make_params, mlflow_uri):
    with (
        pytest.raises(KeyboardInterrupt),
        tracking.stage_run("augment", make_params(), ("augment",)),
    ):
        mlflow.start_run(nested=True)
        raise KeyboardInterrupt
    assert sorted(r.info.status for r in _runs(mlflow_uri)) == ["KILLED", "KILLED"]


def test_pipeline_id_env_and_experiment_name(make_params, monkeypatch):
    monkeypatch.setenv("REPROLAB_PIPELINE_ID", "abc123")
    assert tracking.pipeline_id() == "abc123"
    cfg = make_params({"mlflow": {"experiment": "mine"}})
    assert tracking.experiment_name(cfg, "digits") == "mine"
    assert tracking.experiment_name(make_params(), "houses") == "reprolab-houses"


def test_dvc_dep_hashes_read_from_lock(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "schema: '2.0'\nstages:\n  prepare:\n    outs:\n"
        "    - path: data/prepared\n      md5: abc.dir\n"
    )
    assert tracking.dvc_dep_hashes(["data/prepared", "x"], lock) == {
        "dvc_dep.data/prepared": "abc.dir"
    }


SCRIPT = textwrap.dedent("""
    import sys, time
    from dataclasses import dataclass
    from stages import config
    from stages.runtime import tracking
    from stages.runtime.cli import run_main, parser
    cfg = config.Params()
    @dataclass
    class NoPaths:
        pass
    def body(args):
        with tracking.stage_run("augment", cfg, ("augment",)):
            print("ready", flush=True)
            time.sleep(60)
    sys.exit(run_main("augment", body, parser("augment", "t", NoPaths), []))
""")


@pytest.mark.parametrize(
    ("sig", "code", "status"),
    [
        (signal.SIGTERM, 143, "KILLED"),
        (signal.SIGINT, 130, "KILLED"),
        (signal.SIGKILL, -9, "RUNNING"),
    ],
)
def test_signals_end_runs_killed(tmp_path, sig, code, status, reliability):
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}",
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    (run,) = _runs(env["MLFLOW_TRACKING_URI"])
    assert run.info.status == status
    if sig == signal.SIGKILL:  # the next stage run on this host closes the orphan
        client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
        assert tracking.close_orphaned_runs(client, run.info.experiment_id) == 1
        assert client.get_run(run.info.run_id).info.status == "KILLED"
    name = signal.Signals(sig).name
    reliability.record(
        "fault",
        f"{name} to a running stage (its MLflow run open)",
        f"exit {code}, no traceback; run {status}"
        + ("; the next stage on the host closes it KILLED" if sig == signal.SIGKILL else ""),
        before={"runs RUNNING": 1},
        after={"exit": code, "run": status}
        | ({"after next stage": "KILLED"} if sig == signal.SIGKILL else {}),
    )


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "postgresql://alice:s3cr%40t@127.0.0.1:5432/optuna",
            "postgresql://alice:***@127.0.0.1:5432/optuna",
        ),
        ("use mysql+pymysql://u:p@db/x now", "use mysql+pymysql://u:***@db/x now"),
        ("http://127.0.0.1:5000/api", "http://127.0.0.1:5000/api"),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ],
)
def test_mask_secrets(text, masked):
    assert tracking.mask_secrets(text) == masked


def test_passwords_never_reach_mlflow_params(make_params, mlflow_uri, caplog, reliability):
    cfg = make_params({"mlflow": {"experiment": "pw"}})
    with tracking.stage_run("prepare", cfg, ("seed", "data")):
        tracking.log_params({"tune": {"storage": "postgresql://bob:hunter2@db/optuna"}})
    (run,) = _runs(mlflow_uri)
    assert run.data.params["tune.storage"] == "postgresql://bob:***@db/optuna"
    assert "hunter2" not in caplog.text
    reliability.record(
        "security",
        "a storage URL with a password in params (`postgresql://bob:hunter2@db/optuna`)",
        "masked in MLflow params and in log lines",
        before={},
        after={"MLflow param": run.data.params["tune.storage"], "in logs": False},
    )


def test_experiment_kind_run_names_and_dvc_experiment(make_params, mlflow_uri, monkeypatch):
    client = mlflow.MlflowClient(mlflow_uri)
    client.create_experiment("found")  # made elsewhere, without the kind tag
    monkeypatch.setenv("REPROLAB_PIPELINE_ID", "1a2b3c4d5e6f")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    for experiment in ("found", "new"):
        cfg = make_params({"mlflow": {"experiment": experiment}})
        with tracking.stage_run("prepare", cfg, ("seed",)) as run:
            pass
        tags = client.get_experiment_by_name(experiment).tags
        assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.get_run(run.info.run_id).info.run_name == "prepare · 1a2b3c"
    assert "dvc_experiment" not in client.get_run(run.info.run_id).data.tags
    monkeypatch.setenv("DVC_EXP_NAME", "exp-3f2a1")
    with tracking.stage_run("train", cfg, ("seed",)) as run:
        pass
    got = client.get_run(run.info.run_id)
    assert got.info.run_name == "train · exp-3f2a1"
    assert got.data.tags["dvc_experiment"] == "exp-3f2a1"


def test_split_inputs_carry_dvc_hashes_and_contexts(tmp_path, mlflow_uri, monkeypatch):
    """Digest = DVC's md5 of the split's files (the `.dir` manifest in the cache: the md5 of
    their sorted "relpath md5" lines), else the output's."""
    import hashlib
    import json

    import numpy as np

    from stages.common import splits as split_store
    from stages.runtime import tracking_inputs

    monkeypatch.chdir(tmp_path)
    for folder in ("prepared", "augmented"):
        for split, rows in (("train", 6), ("val", 3)):
            split_store.write(
                f"data/{folder}/{split}",
                X=np.zeros((rows, 1, 2, 2), "float32"),
                y=np.zeros(rows, "int64"),
            )
    manifest = [
        {"md5": hashlib.md5(p.read_bytes()).hexdigest(), "relpath": f"{split}/{p.name}"}
        for split in ("train", "val")
        for p in sorted(Path("data/prepared", split).iterdir())
    ]
    val_lines = sorted(f"{e['relpath']} {e['md5']}" for e in manifest if "val/" in e["relpath"])
    val_md5 = hashlib.md5("\n".join(val_lines).encode()).hexdigest()
    (tmp_path / ".dvc/cache/files/md5/ab").mkdir(parents=True)
    (tmp_path / ".dvc/cache/files/md5/ab/cdef.dir").write_text(json.dumps(manifest))
    Path("dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  prepare:\n    outs:\n"
        "    - path: data/prepared\n      md5: abcdef.dir\n"
        "  augment:\n    outs:\n    - path: data/augmented\n      md5: 0123.dir\n"
    )
    mlflow.set_experiment("inputs")
    splits = {
        "train": [Path("data/augmented/train"), Path("data/prepared/val")],
        "val": [Path("data/prepared/val"), Path("data/prepared/missing")],
    }
    with mlflow.start_run() as run:
        assert tracking_inputs.log_splits("toy", splits) == 2
    inputs = mlflow.MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    got = {
        i.dataset.name: (i.dataset.digest, {t.key: t.value for t in i.tags}["mlflow.data.context"])
        for i in inputs
    }
    assert got == {
        "toy/augmented/train": ("0123.dir", "train"),  # no manifest cached: the folder's hash
        "toy/prepared/val": (val_md5, "train+val"),
    }
    val = next(i.dataset for i in inputs if i.dataset.name == "toy/prepared/val")
    assert json.loads(val.profile)["num_rows"] == 3
    assert '"shape": [-1, 1, 2, 2]' in json.loads(val.schema)["mlflow_tensorspec"]["features"]


def test_long_stages_log_system_metrics(make_params, mlflow_uri, monkeypatch):
    """system_metrics=True: MLflow's monitor samples the machine into system/* metrics."""
    import time

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    cfg = make_params()
    with tracking.stage_run("train", cfg, ("seed",), dataset="digits", system_metrics=True):
        time.sleep(1.5)
    with tracking.stage_run("prepare", cfg, ("seed",), dataset="digits"):
        time.sleep(0.5)
    runs = {r.data.tags["stage"]: r for r in _runs(mlflow_uri)}
    sampled = set(runs["train"].data.metrics)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= sampled
    assert not any(k.startswith("system/") for k in runs["prepare"].data.metrics)
    assert runs["train"].info.status == "FINISHED"


def test_stage_logging_drops_library_noise_and_keeps_warnings():
    """ORT's quantizer lines and MLflow's own INFO handler stay out of a stage's log; other
    warnings pass (in a fresh interpreter: the set-up changes process-wide logging)."""
    code = (
        "import logging, os\n"
        "from stages.runtime.cli import setup_logging\n"
        "setup_logging('s')\n"
        "import mlflow\n"
        "logging.getLogger('mlflow.pyfunc').info('Validating input example against model')\n"
        "logging.warning('Please consider to run pre-processing before quantization. Refer')\n"
        "logging.info('Quantization parameters for tensor:\"t\" not specified')\n"
        "logging.warning('a real warning')\n"
        "print(os.environ['MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "false"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("s WARNING a real warning"), out.stderr
