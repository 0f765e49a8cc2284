"""Just enough of the Chrome DevTools Protocol to drive Debian's headless Chromium from a test:
open pages, evaluate JavaScript in them, take a screenshot, close them. The websocket is
aiohttp's (already a dependency of the lab, for `lab dashboard`); every call is synchronous.

--no-sandbox: Chromium refuses to start as root with its sandbox on ("Running as root
without --no-sandbox is not supported"), and CI and this machine run the tests as root. The
pages it opens here are the lab's own, on 127.0.0.1.

The protocol: https://chromedevtools.github.io/devtools-protocol/ (Target.createTarget,
Runtime.evaluate, Page.captureScreenshot); the browser writes its port and endpoint to
<user-data-dir>/DevToolsActivePort when started with --remote-debugging-port=0.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

CHROMIUM = "/usr/bin/chromium"


class Chromium:
    """A headless Chromium with its own throw-away profile; ``close()`` ends it."""

    def __init__(self, width: int = 1400, height: int = 1000, timeout: float = 30):
        self._loop = asyncio.new_event_loop()
        self._ids = itertools.count(1)
        self._profile = Path(tempfile.mkdtemp(prefix="lab-chromium-"))
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-extensions",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        active = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (active.exists() and len(active.read_text().split()) == 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{CHROMIUM} did not open its DevTools port")
            time.sleep(0.1)
        port, path = active.read_text().split()
        self._http = self._run(self._session())
        self._browser = self._run(self._http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0))

    async def _session(self):
        return aiohttp.ClientSession()

    def _run(self, coro, timeout: float = 30):
        return self._loop.run_until_complete(asyncio.wait_for(coro, timeout))

    async def _call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        ident = next(self._ids)
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        await self._browser.send_json(message)
        while True:
            reply = await self._browser.receive_json()
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        return self._run(self._call(method, params, session))

    def open(self, url: str) -> "Page":
        """A new page (tab) loading ``url``."""
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, target, session)

    def close(self) -> None:
        try:
            if getattr(self, "_http", None) is not None:
                self._run(self._http.close())
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self._loop.close()
            shutil.rmtree(self._profile, ignore_errors=True)


class Page:
    def __init__(self, browser: Chromium, target: str, session: str):
        self.browser, self.target, self.session = browser, target, session

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                   self.session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10, what: str = ""):
        """Poll ``expression`` until it is truthy; return its value.

        Raises:
            AssertionError: naming ``what`` and the last value after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen within {timeout} s: {what or expression} (last: {value!r})")
            time.sleep(0.2)

    def screenshot(self, path: Path) -> Path:
        data = self.browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False},
                                 self.session)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})


def available() -> bool:
    return os.access(CHROMIUM, os.X_OK)
