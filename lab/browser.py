"""Headless Chromium, driven over the DevTools protocol on a pipe (no websocket library).

    with Chromium(home=profile.home) as browser:
        page = browser.open("https://localhost:8443/whoami")
        page.text("client_verify")        # "SUCCESS"
        page.save_screenshot(Path("docs/images/browser-nlb.png"))

`--remote-debugging-pipe` makes Chromium read DevTools commands from file descriptor 3 and
write answers and events to 4, each a JSON message ended by a NUL byte (what Puppeteer's
`pipe: true` uses). One browser, one tab; `open` waits for the page's load event, error pages
included, and reports the navigation error (`net::ERR_...`) when there was one.

Chromium reads its NSS certificate store from ``$HOME/.pki/nssdb`` (not from the profile
folder): `home` is that HOME (lab/nssdb.py makes one).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import LabError

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium package
DEFAULT_TIMEOUT = 20.0
WINDOW = (900, 640)
FLAGS = [
    "--headless",
    # The sandbox needs user namespaces or a setuid helper, which containers and root (CI)
    # do not give; Chromium refuses to start as root without this flag.
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-pipe",
    # Offline: no background traffic, no proxy from the environment, and no name resolves
    # but localhost, so the browser can reach only the lab's loopback ports.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-pings",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
]


class BrowserError(LabError):
    """Chromium is missing, did not start, or did not answer in time."""


@dataclass(frozen=True)
class Page:
    """What a tab showed after a navigation."""

    url: str
    title: str
    html: str
    body_text: str
    error: str  # the navigation error ("net::ERR_BAD_SSL_CLIENT_AUTH_CERT"), "" when none
    screenshot: bytes  # PNG
    texts: dict  # element id -> its text, for every element with an id

    def text(self, element_id: str) -> str:
        """The text of the element with that id.

        Raises:
            KeyError: when the page has no such element.
        """
        return self.texts[element_id]

    def save_screenshot(self, path: Path) -> Path:
        """Write the PNG to ``path`` (folders made)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.screenshot)
        return path


# Collected in the page, so that the test reads what the browser rendered, not the HTTP body.
_PAGE_FACTS = """(() => ({
  title: document.title,
  html: document.documentElement ? document.documentElement.outerHTML : "",
  body_text: document.body ? document.body.innerText : "",
  texts: Object.fromEntries([...document.querySelectorAll("[id]")].map(e => [e.id, e.textContent])),
}))()"""


class Chromium:
    """One headless Chromium with a throwaway profile folder; a context manager.

    Args:
        home: the HOME it runs with (its NSS store is ``home/.pki/nssdb``).
        binary: the chromium command.
        timeout: seconds to wait for each DevTools answer or page load.
        window: the viewport (width, height) of screenshots.
        net_log: where Chromium writes its NetLog (complete once closed; `tls_log` reads it).

    Raises:
        BrowserError: when the binary is missing or Chromium does not start.
    """

    def __init__(self, home: Path, *, binary: str = CHROMIUM, timeout: float = DEFAULT_TIMEOUT,
                 window: tuple = WINDOW, net_log: Path | None = None):
        if not shutil.which(binary):
            raise BrowserError(f"{binary} not found: install Debian's chromium package "
                               "(apt-get install chromium)")
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="lab-chromium-")
        self._buffer = b""
        self._events: list[dict] = []
        self._next_id = 0
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        argv = [binary, *FLAGS, f"--user-data-dir={self._profile}",
                f"--window-size={window[0]},{window[1]}"]
        if net_log is not None:
            argv.append(f"--log-net-log={net_log}")
        argv.append("about:blank")

        def fds_3_and_4():  # in the child: DevTools reads fd 3 and writes fd 4
            # (copied above 10 first, so that neither end overwrites the other on the way)
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]
            os.dup2(high[0], 3)  # dup2 makes them inheritable: the pipes' own fds close at exec
            os.dup2(high[1], 4)

        # Its log goes to a file: a pipe nobody reads would fill up and stall the browser.
        self._log = Path(self._profile) / "chromium.log"
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(argv, env={**os.environ, "HOME": str(home)}, preexec_fn=fds_3_and_4,
                                          close_fds=False, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        try:
            targets = self._call("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            self._session = self._call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
            self._call("Page.enable", session=True)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self, url: str) -> Page:
        """Navigate the tab to ``url`` and wait for its load event (an error page's too).

        Raises:
            BrowserError: when the page does not load within the timeout.
        """
        self._events = [e for e in self._events if e.get("method") != "Page.loadEventFired"]
        answer = self._call("Page.navigate", url=url, session=True)
        self._wait_event("Page.loadEventFired", f"{url} to load")
        facts = self._call("Runtime.evaluate", expression=_PAGE_FACTS, returnByValue=True,
                           session=True)["result"]["value"]
        shot = self._call("Page.captureScreenshot", format="png", session=True)["data"]
        return Page(url=url, title=facts["title"], html=facts["html"], body_text=facts["body_text"], error=answer.get("errorText", ""),
                    screenshot=base64.b64decode(shot), texts=facts["texts"])

    def close(self) -> None:
        """Stop Chromium (and every process it started) and remove its profile folder."""
        if self._proc.poll() is None:
            # Asked to close, Chromium finishes its NetLog; a signal to the group would not.
            with contextlib.suppress(OSError):
                os.write(self._to_browser, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):  # helpers left behind, or a hung browser
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)
            try:
                self._proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    # -- the DevTools pipe --

    def _call(self, method: str, session: bool = False, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except OSError as exc:
            raise BrowserError(f"Chromium is not listening ({exc}): {self._stderr_tail()}") from None
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"Chromium refused {method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def _wait_event(self, name: str, what: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for event in self._events:
                if event.get("method") == name:
                    self._events.remove(event)
                    return event
            self._events.append(self._read(deadline, what))

    def _read(self, deadline: float, what: str) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready = select.select([self._from_browser], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                raise BrowserError(f"Chromium did not answer within {self.timeout:.0f} s (waiting for {what})")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium exited (waiting for {what}): {self._stderr_tail()}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _stderr_tail(self) -> str:
        if self._proc.poll() is None:
            return "still running"
        lines = [line for line in self._log.read_text(errors="replace").splitlines()
                 if "dbus" not in line]  # no session bus in containers: noise
        return (lines[-1:] or [f"exit {self._proc.returncode}"])[0]


# TLS alert descriptions (RFC 8446 section 6), the ones a client-certificate refusal uses.
ALERTS = {40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
          44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
          48: "unknown_ca", 49: "access_denied", 51: "decrypt_error", 116: "certificate_required"}


@dataclass(frozen=True)
class TlsLog:
    """What Chromium's NetLog says about its TLS handshakes."""

    certs_sent: list  # for each server that asked for a client certificate: how many it got
    alerts: list  # the fatal TLS alerts servers sent ("certificate_required")


def tls_log(path: Path) -> TlsLog:
    """Read the client-certificate decisions and the fatal alerts from a NetLog file.

    Raises:
        BrowserError: when the file is not a complete NetLog (Chromium still running?).
    """
    try:
        log = json.loads(Path(path).read_text())
        names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
        events = [(names.get(e["type"]), e.get("params", {})) for e in log["events"]]
    except (OSError, ValueError, KeyError) as exc:
        raise BrowserError(f"{path} is not a complete NetLog ({exc}): close the browser first") from None
    sent = [params.get("cert_count", 0) for name, params in events if name == "SSL_CLIENT_CERT_PROVIDED"]
    alerts = []
    for name, params in events:
        raw = base64.b64decode(params.get("bytes", "")) if name == "SSL_ALERT_RECEIVED" else b""
        if len(raw) == 2 and raw[0] == 2:  # level 2: fatal
            alerts.append(ALERTS.get(raw[1], str(raw[1])))
    return TlsLog(certs_sent=sent, alerts=alerts)
