"""reports/report.html renders in real headless Chromium (tests/chromium.py) with no console
errors. The screenshot is kept as a test artifact in $REPROLAB_TEST_ARTIFACTS (default: the
test's tmp_path).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from chromium import DevTools, browser_binary, evaluate_json, open_page, page_errors, screenshot

from stages.baselines import stage as baselines
from stages.evaluate import stage as evaluate
from stages.prepare import stage as prepare


@pytest.fixture
def report_html(make_params, tmp_path) -> Path:
    cfg = make_params(
        {
            "data": {"source": "breast_cancer"},
            "baselines": {"models": ["logreg_l2", "decision_tree_gini", "knn"]},
            "evaluate": {"bootstrap": 200, "latency_repeats": 2, "latency_budget_s": 0.05},
        }
    )
    prepared, bl = tmp_path / "prepared", tmp_path / "models" / "baselines"
    prepare.run(cfg, prepared, root=tmp_path)
    baselines.run(
        cfg, baselines.Paths(prepared, tmp_path / "aug", bl, tmp_path / "bl.json", tmp_path / "imp")
    )
    evaluate.run(
        cfg,
        evaluate.Paths(
            prepared, bl, tmp_path / "model.pt", tmp_path / "compressed",
            tmp_path / "leaderboard.json", tmp_path / "plots", tmp_path / "reports",
            tmp_path / "imp",
        ),
    )  # fmt: skip
    return tmp_path / "reports" / "report.html"


def test_report_renders_in_headless_chromium(report_html, tmp_path):
    browser = DevTools(browser_binary(), tmp_path / "chromium-profile")
    try:
        open_page(browser, report_html.as_uri())
        page = evaluate_json(
            browser,
            "JSON.stringify({images: document.images.length,"
            " loaded: Array.from(document.images).filter("
            "i => i.complete && i.naturalWidth > 0).length,"
            " rows: document.querySelectorAll('#leaderboard tbody tr').length,"
            " importance: Array.from(document.querySelectorAll('#importance tbody tr'))"
            ".map(r => r.cells[1].textContent),"
            " title: document.title, width: document.body.scrollWidth})",
        )
        png = screenshot(browser)
    finally:
        browser.close()
    assert page_errors(browser.events) == []
    # 5 evaluate plots + one importance figure per baseline; every inline image decodes
    assert page["images"] == 8 and page["loaded"] == 8
    # the tree's own importances, sklearn's permutation importance for the other two
    assert sorted(page["importance"]) == ["impurity", "permutation", "permutation"]
    assert page["rows"] == 3 and page["title"] == "Evaluation report: breast_cancer"
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    artifacts = Path(os.environ.get("REPROLAB_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "report_screenshot.png").write_bytes(png)
