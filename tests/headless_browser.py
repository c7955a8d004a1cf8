"""Headless Chromium driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``:
commands on the browser's fd 3, replies on its fd 4, each a JSON message ended by a NUL byte), so
tests can upload a file into a page and click in it with nothing but Chromium and the standard
library (no websocket client, no Selenium or Playwright).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with one page; :meth:`close` ends it."""

    def __init__(self, binary: str, profile: Path, log: Path):
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        # bash puts the pipe ends on the descriptors 3 and 4 that Chromium reads and writes
        # (POSIX sh may not take descriptors above 9 in a redirection)
        script = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}'
        args = [*FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                ["bash", "-c", script, binary, *args],
                pass_fds=(to_browser, from_browser),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self.attached: str | None = None

    def send(self, method: str, params: dict | None = None, *, timeout: float = 60) -> dict:
        """Send one command (to the page once :meth:`open` attached to it) and wait for its
        reply; events met meanwhile are dropped."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.attached is not None and not method.startswith("Target."):
            message["sessionId"] = self.attached
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                    raise TimeoutError(f"no reply to {method} in {timeout} s")
                chunk = os.read(self._replies, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"the browser closed the pipe (exit {self.proc.poll()})")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.attached = attached["sessionId"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 120) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.5)
        raise TimeoutError(f"{expression!r} stayed false for {timeout} s")

    def upload(self, selector: str, path: Path) -> None:
        """Put ``path`` into the first file input matching ``selector`` (as a user's choice in
        the file dialog: the page's change handlers run)."""
        root = self.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        if not node:
            raise LookupError(f"no element matches {selector!r}")
        self.send("DOM.setFileInputFiles", {"files": [str(path)], "nodeId": node})

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        os.close(self._commands)
        os.close(self._replies)
