"""reports/report.html renders in real headless Chromium with no console errors.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: fd 3 in,
fd 4 out, NUL-separated JSON), so no driver package is needed. The screenshot is kept as a
test artifact in $REPROLAB_TEST_ARTIFACTS (default: the test's tmp_path).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from stages.baselines import stage as baselines
from stages.evaluate import stage as evaluate
from stages.prepare import stage as prepare

BAD_CONSOLE = ("error", "assert")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe", "--window-size=1280,1600",
)  # fmt: skip


def _browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.skip(f"no Chromium binary on PATH (looked for {', '.join(BROWSERS)}); "
                "install Debian's `chromium` package")  # fmt: skip


def _as_fds_3_and_4(read_end: int, write_end: int) -> None:
    """In the child: the pipe ends become fds 3 and 4, inheritable across exec."""
    a, b = os.dup(read_end), os.dup(write_end)  # above 4, so dup2 cannot clobber them
    os.dup2(a, 3)
    os.dup2(b, 4)


class DevTools:
    """Minimal CDP client: send commands, collect events, on one flattened page session."""

    def __init__(self, binary: str, profile: Path):
        to_browser_r, self._w = os.pipe()
        self._r, from_browser_w = os.pipe()
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            close_fds=False,  # close-on-exec still drops every fd but the two below
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: _as_fds_3_and_4(to_browser_r, from_browser_w),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf, self._id, self.events, self.session = b"", 0, [], None

    def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        reply = self._until(lambda m: m.get("id") == self._id, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        return self._until(lambda m: m.get("method") == method, timeout)

    def _until(self, match, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "method" in msg:
                    self.events.append(msg)
                if match(msg):
                    return msg
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk

    def close(self) -> None:
        try:
            self.session = None
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        finally:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            os.close(self._w)
            os.close(self._r)


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
        ),
    )  # fmt: skip
    return tmp_path / "reports" / "report.html"


def test_report_renders_in_headless_chromium(report_html, tmp_path):
    browser = DevTools(_browser(), tmp_path / "chromium-profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        browser.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable")
        browser.send("Page.navigate", {"url": report_html.as_uri()})
        browser.wait_event("Page.loadEventFired")
        check = browser.send(
            "Runtime.evaluate",
            {
                "expression": "JSON.stringify({images: document.images.length,"
                " loaded: Array.from(document.images).filter("
                "i => i.complete && i.naturalWidth > 0).length,"
                " rows: document.querySelectorAll('#leaderboard tbody tr').length,"
                " title: document.title, width: document.body.scrollWidth})",
                "returnByValue": True,
            },
        )
        page = json.loads(check["result"]["value"])
        shot = browser.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
    finally:
        browser.close()
    errors = [
        e for e in browser.events
        if e["method"] == "Runtime.exceptionThrown"
        or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in BAD_CONSOLE)
        or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]  # fmt: skip
    assert errors == []
    assert page["images"] == 5 and page["loaded"] == 5  # every inline image decodes
    assert page["rows"] == 3 and page["title"] == "Evaluation report: breast_cancer"
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    artifacts = Path(os.environ.get("REPROLAB_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "report_screenshot.png").write_bytes(png)
