"""dvc.yaml's plot declarations through real `dvc plots show --json`: one ROC line per
candidate, scatter for compression, sorted bars for importances, history declared once; and
the page `scripts/plots_html.py` writes, rendered offline in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chromium import DevTools, browser_binary, evaluate_json, open_page, page_errors, screenshot

REPO = Path(__file__).resolve().parents[1]
# for each chart vegaEmbed has drawn: its svg's width and the color scale's domain (the
# series: one per candidate on the ROC plot)
DRAWN = """(() => {
  const domain = (v) => { try { return v.scale("color").domain(); } catch (e) { return []; } };
  return JSON.stringify(Object.fromEntries(Object.entries(window.plotViews || {}).map(
    ([id, v]) => [id, {width: document.getElementById(id).querySelector(".chart-wrapper > svg")
      ?.getBoundingClientRect().width || 0, colors: domain(v)}])));
})()"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory) -> Path:
    """A dvc project with this repo's dvc.yaml and templates and small plot files."""
    tmp_path = tmp_path_factory.mktemp("plots")
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
    _write(tmp_path / "plots/evaluate/confusion.csv", "actual,predicted\n0,0\n1,1\n1,0\n")
    _write(tmp_path / "plots/evaluate/predictions.csv", "actual,predicted\n1.0,1.2\n2.0,1.9\n")
    history_csv = "epoch,train/loss,val/loss\n0,1.0,1.1\n1,0.5,0.6\n"
    _write(tmp_path / "plots/train_history.csv", history_csv)
    return tmp_path


def test_plots_render_one_series_per_candidate(plots_repo):
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "--json", "-o", str(plots_repo / "html")],
        cwd=plots_repo, capture_output=True, text=True, check=True,
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


def test_offline_page_draws_every_plot_in_chromium(plots_repo, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plots_html.py"), "-o", str(tmp_path / "page")],
        cwd=plots_repo, env=env, check=True, capture_output=True,
    )  # fmt: skip
    page = tmp_path / "page" / "index.html"
    html = page.read_text()
    assert "cdn.jsdelivr.net" not in html  # nothing to fetch: renders offline
    charts = re.findall(r"vegaEmbed\('#([^']+)'", html)
    browser = DevTools(browser_binary(), tmp_path / "chromium-profile")
    try:
        open_page(browser, page.as_uri())
        deadline, drawn = time.monotonic() + 30, {}
        while time.monotonic() < deadline:  # vegaEmbed renders asynchronously
            drawn = evaluate_json(browser, DRAWN)
            if sorted(drawn) == sorted(charts):
                break
            time.sleep(0.2)
        png = screenshot(browser)
    finally:
        browser.close()
    assert page_errors(browser.events) == []
    assert len(charts) == 6  # the six data plots dvc.yaml declares (the PNGs are <img>)
    assert sorted(drawn) == sorted(charts)  # every chart on the page was drawn
    assert all(v["width"] > 100 for v in drawn.values()), drawn
    roc = [v for k, v in drawn.items() if "roc" in k]
    assert [sorted(r["colors"]) for r in roc] == [["knn", "logreg_l2", "network"]]
    artifacts = Path(os.environ.get("REPROLAB_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "dvc_plots_screenshot.png").write_bytes(png)
