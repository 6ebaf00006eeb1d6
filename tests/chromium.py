"""Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
fd 3 in, fd 4 out, NUL-separated JSON), so no driver package is needed. Shared by the tests
that render the report and the dvc plots page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

BAD_CONSOLE = ("error", "assert")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe", "--window-size=1280,1600",
)  # fmt: skip


def browser_binary() -> str:
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


def page_errors(events: list[dict]) -> list[dict]:
    """Uncaught exceptions, console errors/asserts and error log entries of a page."""
    return [
        e for e in events
        if e["method"] == "Runtime.exceptionThrown"
        or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in BAD_CONSOLE)
        or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]  # fmt: skip


def open_page(browser: DevTools, url: str) -> None:
    """A new tab on one flattened session, with Page/Runtime/Log events on, loaded at `url`."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    attached = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})
    browser.session = attached["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        browser.send(f"{domain}.enable")
    browser.send("Page.navigate", {"url": url})
    browser.wait_event("Page.loadEventFired")


def evaluate_json(browser: DevTools, expression: str):
    """The value of a JS expression that returns JSON.stringify(...)."""
    reply = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
    return json.loads(reply["result"]["value"])


def screenshot(browser: DevTools) -> bytes:
    import base64

    shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    return base64.b64decode(shot["data"])
