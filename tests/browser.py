"""A real headless Chromium, driven over the DevTools protocol, for tests of pages we write.

``open_page`` starts Debian's ``chromium`` on a loopback debugging port, loads a file, and
returns what a reader would meet: console errors and uncaught exceptions, the size and content
of each ``figure.plot``, and a full-page PNG screenshot.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

PATIENCE_S = 60.0  # a guard against hanging, never a performance expectation
WIDTH_PX = 1200

# Each plot: its id, its drawn size, and how many of its SVG elements draw something.
_PLOTS_JS = """JSON.stringify([...document.querySelectorAll('figure.plot')].map(f => {
  const svg = f.querySelector('svg'); const box = svg ? svg.getBoundingClientRect() : null;
  return {id: f.id, width: box ? box.width : 0, height: box ? box.height : 0,
          marks: svg ? svg.querySelectorAll('path, rect, use, line, polyline').length : 0};
}))"""


@dataclass
class PageView:
    errors: list[str]  # console errors, uncaught exceptions, failed loads
    plots: list[dict[str, Any]]  # {"id", "width", "height", "marks"}
    report_data: Any  # the parsed report-data JSON block, or None
    screenshot: bytes  # PNG


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def open_page(path: Path) -> PageView:
    binary = chromium()
    assert binary is not None, "chromium is not installed"
    with tempfile.TemporaryDirectory() as profile, subprocess.Popen(
            [
                binary, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                f"--user-data-dir={profile}", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    ) as process:  # fmt: skip
        try:
            url = _devtools_url(process)
            # Chromium logs on: drained, its stderr never fills and stalls it.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return _drive(url, path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _devtools_url(process: subprocess.Popen) -> str:
    assert process.stderr is not None
    seen = []
    deadline = time.monotonic() + PATIENCE_S
    for line in process.stderr:
        seen.append(line)
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:
            return match.group(1)
        if time.monotonic() > deadline:
            break
    raise AssertionError("chromium did not start:\n" + "".join(seen[-20:]))


class _Session:
    """One page target of the browser, over the browser's socket (flattened sessions)."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.session_id: str | None = None
        self.events: list[dict] = []

    def call(self, method: str, **params: Any) -> dict:
        message_id = next(self.ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if self.session_id is not None:
            message["sessionId"] = self.session_id
        self.socket.send(json.dumps(message))
        deadline = time.monotonic() + PATIENCE_S
        while True:
            reply = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + PATIENCE_S
        while True:
            event = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(event)
            if event.get("method") == method:
                return event


def _drive(url: str, path: Path) -> PageView:
    with connect(url, max_size=None, open_timeout=PATIENCE_S) as socket:
        page = _Session(socket)
        target = page.call("Target.createTarget", url="about:blank")["targetId"]
        page.session_id = page.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            width=WIDTH_PX, height=900, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        page.call("Page.navigate", url=path.resolve().as_uri())
        page.wait_for("Page.loadEventFired")
        plots = json.loads(page.call("Runtime.evaluate", expression=_PLOTS_JS)["result"]["value"])
        data = page.call(
            "Runtime.evaluate",
            expression="(document.getElementById('report-data') || {}).textContent || 'null'",
        )["result"]["value"]
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        screenshot = base64.b64decode(shot["data"])
        return PageView(_errors(page.events), plots, json.loads(data), screenshot)


def _errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            thrown = details.get("exception", {}).get("description", "")
            errors.append(f"{details.get('text', 'exception')} {thrown}".strip())
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            errors.append(" ".join(str(a.get("value", a.get("description"))) for a in args))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"]["text"])
    return errors
