"""dvc.yaml's plot declarations through real `dvc plots show --json`: one ROC line per
candidate, scatter for compression, sorted bars for importances, history declared once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_plots_render_one_series_per_candidate(tmp_path):
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    shutil.copytree(REPO / ".dvc" / "plots", tmp_path / ".dvc" / "plots")
    roc = ["candidate,fpr,tpr"]
    for name, lift in (("knn", 0.1), ("logreg_l2", 0.2), ("network", 0.3)):
        roc += [f"{name},{x / 4},{min(1.0, x / 4 + lift)}" for x in range(5)]
    _write(tmp_path / "plots/evaluate/roc.csv", "\n".join(roc) + "\n")
    _write(tmp_path / "plots/importance/knn.csv", "feature,importance,kind\nf1,0.3,p\nf0,0.1,p\n")
    _write(
        tmp_path / "plots/compression.csv",
        "variant,latency_ms_b256_p50,delta\noriginal,9.1,0.0\nint8,2.0,-0.01\n",
    )
    history_csv = "epoch,train/loss,val/loss\n0,1.0,1.1\n1,0.5,0.6\n"
    _write(tmp_path / "plots/train_history.csv", history_csv)
    out = subprocess.run(
        [*dvc, "plots", "show", "--json", "-o", str(tmp_path / "html")],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    data = json.loads(out.stdout)["data"]

    [roc_plot] = data["plots/evaluate/roc.csv"]
    spec = roc_plot["content"]
    assert spec["encoding"]["color"]["field"] == "candidate"
    values = spec["data"]["values"]
    assert {v["candidate"] for v in values} == {"knn", "logreg_l2", "network"}
    assert spec["mark"]["type"] == "line"

    [bars] = data["plots/importance/knn.csv"]
    assert bars["content"]["mark"]["type"] == "bar"
    assert bars["content"]["encoding"]["y"]["field"] == "feature"
    assert bars["content"]["encoding"]["y"]["sort"] == "-x"  # sorted by importance

    [scatter] = data["plots/compression.csv"]
    assert scatter["content"]["mark"]["type"] == "point"

    history = data["plots/train_history.csv"]
    assert len(history) == 1  # declared once
    assert {"train/loss", "val/loss"} <= set(json.dumps(history[0]["content"]).split('"'))
