"""Real clients against a running lab: requests from the host, curl from the client
container, and HAProxy's runtime API.

Traffic goes only to 127.0.0.1 (published ports) and to the lab's own containers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import requests

from .certs import CLIENT_NAMES, Layout
from .errors import CertsMissing

DEFAULT_TIMEOUT = 10.0


class _Session(requests.Session):
    """A session whose requests time out unless told otherwise (requests' default is never)."""

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        return super().request(*args, **kwargs)


def session(certs_dir: Path, client: str | None = None) -> requests.Session:
    """A requests session that trusts only the lab CA and presents ``client``'s certificate;
    every request times out after 10 s unless given its own ``timeout``.

    Args:
        certs_dir: the lab's certs folder.
        client: a name under certs/clients, or None for no client certificate.
    """
    lay = Layout(Path(certs_dir))
    needed = [lay.ca_cert] + ([lay.client_cert(client), lay.client_key(client)] if client else [])
    for path in needed:
        if not path.exists():
            raise CertsMissing(f"{path} is missing: run `lab certs` (clients: {', '.join(CLIENT_NAMES)})")
    s = _Session()
    s.trust_env = False  # ignore REQUESTS_CA_BUNDLE and proxies: talk to the lab only
    s.verify = str(lay.ca_cert)
    if client:
        s.cert = (str(lay.client_cert(client)), str(lay.client_key(client)))
    return s


def nlb_url(port: int, path: str = "/whoami") -> str:
    # "localhost" is in the server certificate's SANs and resolves to loopback everywhere.
    return f"https://localhost:{port}{path}"


@dataclass
class Reply:
    """One HTTP answer: status code and body (parsed JSON when it is JSON)."""

    status: int
    body: object

    @property
    def backend(self) -> str | None:
        return self.body.get("backend") if isinstance(self.body, dict) else None


def _parse(status: int, text: str) -> Reply:
    try:
        return Reply(status, json.loads(text))
    except ValueError:
        return Reply(status, text)


def get(certs_dir: Path, port: int, client: str | None = "alice", path: str = "/whoami",
        timeout: float = 5.0) -> Reply:
    """One request on a fresh connection from the host through the published NLB port."""
    with session(certs_dir, client) as s:
        resp = s.get(nlb_url(port, path), timeout=timeout, headers={"Connection": "close"})
        return _parse(resp.status_code, resp.text)


@dataclass(frozen=True)
class Outcome:
    """How an mTLS attempt ended: an HTTP answer, or a TLS failure before any HTTP.

    kind: "http" (status and nginx's $ssl_client_verify), "alert" (the handshake failed;
    reason is OpenSSL's, e.g. TLSV1_ALERT_PROTOCOL_VERSION) or "client-refused" (the
    client library would not even start, e.g. a key that does not match the certificate).
    """

    kind: str
    status: int = 0
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.status or ''} {self.reason}".replace("  ", " ").strip()


def attempt(certs_dir: Path, port: int, *, cert: Path | None = None, key: Path | None = None,
            tls_version: str | None = None, host: str = "127.0.0.1", path: str = "/whoami",
            timeout: float = 5.0) -> Outcome:
    """One HTTPS request with full control of the client side (http.client + OpenSSL).

    Args:
        certs_dir: the lab's certs folder (for the CA).
        port: where to connect on ``host``.
        cert, key: the client certificate (chain) and key files, or None for no certificate.
        tls_version: pin the protocol ("TLSv1", "TLSv1_1", "TLSv1_2", "TLSv1_3"); old ones are
            allowed on the client side (SECLEVEL=0) so that the server is the one refusing.
    """
    import http.client
    import ssl
    import warnings

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(Layout(Path(certs_dir)).ca_cert))
    if tls_version:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            version = getattr(ssl.TLSVersion, tls_version)
            ctx.minimum_version = ctx.maximum_version = version
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        if cert:
            ctx.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        return Outcome("client-refused", reason=exc.reason or str(exc))
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": "www.lab.test", "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
    except ssl.SSLError as exc:
        return Outcome("alert", reason=exc.reason or str(exc))
    except (ConnectionError, OSError) as exc:
        return Outcome("alert", reason=type(exc).__name__)
    finally:
        conn.close()
    reply = _parse(resp.status, body)
    verdict = reply.body.get("client_verify", "") if isinstance(reply.body, dict) else ""
    return Outcome("http", resp.status, verdict)


def _split_curl(out: str) -> list[Reply]:
    """Split `curl -w '\\n%{http_code}\\n' URL URL...` output into replies."""
    replies, body = [], []
    for line in out.splitlines():
        if re.fullmatch(r"\d{3}", line):
            replies.append(_parse(int(line), "\n".join(body)))
            body = []
        else:
            body.append(line)
    return replies
