"""The one way the lab makes a client request: `request(via, client, ...)` returns an Answer.

Two transports take the same arguments (a `Request`) and give the same answers:

- `Host`: Python's ssl and http.client from this machine, to a published port on
  127.0.0.1 (or another address the host reaches, such as a backend on the vpc bridge);
- `Container`: curl in the lab's client container, from a chosen source address
  (`--interface`), to a load balancer's address (`--resolve`).

Every request opens its own connection and says `Connection: close`, so each one is a
fresh decision by the load balancer; ``count`` requests in a row resume the TLS session
of the first, as browsers do. Traffic goes only to loopback and the lab's own containers.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field, replace
from pathlib import Path

from .answer import CLIENT_REFUSED, Answer, parse_body
from .containers import ClientContainer
from .credentials import Credentials
from . import keylog

SERVER_NAME = "www.lab.test"  # in the server certificate: SNI, Host and curl's --resolve
READ_HEADERS = ("x-backend", "set-cookie")  # the response headers the lab reads
DEFAULT_TIMEOUT = 5.0
MARK = "@@lab@@"
# curl's --write-out after each URL: one line the parser finds whatever the body holds
# (set-cookie last: it contains spaces)
WRITE_OUT = (f"\n{MARK} %{{http_code}} %{{exitcode}} %{{time_total}} "
             f"%header{{x-backend}} %header{{set-cookie}}\n")
_CURL_TLS = {"TLSv1": "1.0", "TLSv1_1": "1.1", "TLSv1_2": "1.2", "TLSv1_3": "1.3"}


@dataclass(frozen=True)
class Request:
    """What to send, the same for both transports.

    client: a lab client's name (None: no certificate) or Credentials.
    port: where to connect (the container transport defaults to 443, where the name
        www.lab.test leads to the NLB); address: the host to connect to instead of the
        default (127.0.0.1 from the host; the client container's own resolution).
    source: the source address to send from. count: requests in a row, each on a new
        connection, resuming the first one's TLS session.
    headers: extra request headers. tls_version: pin the protocol ("TLSv1_2").
    """

    client: str | None | Credentials = "alice"
    path: str = "/whoami"
    port: int | None = None
    address: str | None = None
    source: str | None = None
    count: int = 1
    cookie: str | None = None
    headers: dict = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    tls_version: str | None = None

    def request_headers(self) -> dict:
        headers = {"Host": SERVER_NAME if self.port in (None, 443) else f"{SERVER_NAME}:{self.port}",
                   "Connection": "close"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        return {**headers, **self.headers}

    def url(self) -> str:
        port = "" if self.port in (None, 443) else f":{self.port}"
        return f"https://{SERVER_NAME}{port}{self.path}"

    def curl_options(self, credentials: list[str]) -> list[str]:
        """curl's options for this request (without --write-out and the URLs)."""
        argv = ["curl", "-sS", "--max-time", f"{self.timeout:g}", *credentials]
        for name, value in self.request_headers().items():
            if name != "Host":  # curl sends it from the URL
                argv += ["-H", f"{name}: {value}"]
        if self.source:
            argv += ["--interface", self.source]
        if self.address:
            argv += ["--resolve", f"{SERVER_NAME}:{self.port or 443}:{self.address}"]
        if self.tls_version:
            version = _CURL_TLS[self.tls_version]
            argv += [f"--tlsv{version}", "--tls-max", version]
        return argv


class Host:
    """Python's ssl and http.client from this machine (loopback, published ports)."""

    def __init__(self, certs_dir: Path):
        self.certs_dir = Path(certs_dir)

    def credentials(self, req: Request) -> Credentials:
        return Credentials.of(self.certs_dir, req.client)

    def argv(self, req: Request) -> list[str]:
        """The curl command that sends the same request from the host (for people to read)."""
        req = replace(req, address=req.address or "127.0.0.1")
        return req.curl_options(self.credentials(req).curl_host_args()) + [req.url()] * req.count

    def send(self, req: Request) -> list[Answer]:
        """``req.count`` answers.

        Raises:
            CertsMissing: when the CA or the client's files are not there.
            ValueError: without a port.
        """
        if req.port is None:
            raise ValueError("a request from the host needs the published port")
        creds = self.credentials(req).check()
        argv, address = self.argv(req), req.address or "127.0.0.1"
        try:
            ctx = creds.ssl_context(req.tls_version)
            if (log := keylog.active()) is not None:  # `lab capture`: Wireshark decrypts it
                ctx.keylog_filename = str(log.host)
        except ssl.SSLError as exc:  # the client would not even start (a key that does not match)
            return [Answer(error=CLIENT_REFUSED + (exc.reason or str(exc)), source=req.source, argv=argv)
                    for _ in range(req.count)]
        answers, session = [], None
        for _ in range(req.count):
            answer, session = self._one(ctx, req, address, session)
            answers.append(replace(answer, argv=argv))
        return answers

    @staticmethod
    def _one(ctx: ssl.SSLContext, req: Request, address: str, session):
        started = time.perf_counter()
        conn = http.client.HTTPSConnection(address, req.port, timeout=req.timeout)
        try:
            raw = socket.create_connection((address, req.port), timeout=req.timeout,
                                           source_address=(req.source, 0) if req.source else None)
            try:
                conn.sock = ctx.wrap_socket(raw, server_hostname=SERVER_NAME, session=session)
            except BaseException:
                raw.close()
                raise
            conn.request("GET", req.path, headers=req.request_headers())
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace")
            session = conn.sock.session if conn.sock else session
        except ssl.SSLError as exc:  # TLSV1_ALERT_PROTOCOL_VERSION, TLSV13_ALERT_CERTIFICATE_REQUIRED...
            return Answer(error=exc.reason or str(exc), seconds=_since(started), source=req.source), session
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out
            return Answer(error=type(exc).__name__, seconds=_since(started), source=req.source), session
        finally:
            conn.close()
        headers = {name: resp.getheader(name) for name in READ_HEADERS if resp.getheader(name) is not None}
        return Answer(resp.status, parse_body(text), headers, seconds=_since(started), source=req.source), session


class Container:
    """curl in the lab's client container."""

    def __init__(self, box: ClientContainer):
        self.box = box

    def argv(self, req: Request, extra=()) -> list[str]:
        """curl's argument list for ``req`` (``extra``: more options, such as --rate)."""
        creds = req.client if isinstance(req.client, Credentials) else Credentials(None, req.client)
        return (req.curl_options(creds.curl_container_args()) + ["-w", WRITE_OUT, *extra]
                + [req.url()] * req.count)

    def send(self, req: Request) -> list[Answer]:
        """``req.count`` answers (those curl never got to say why it stopped: no HTTP answer)."""
        argv = self.argv(req)
        log = keylog.active()  # `lab capture`: curl writes its TLS secrets (SSLKEYLOGFILE)
        rc, out, err = self.box.exec_split(argv, env=log.container_env() if log else None)
        answers = parse_curl(out, source=req.source, argv=argv, error=err.strip(), rc=rc)
        missing = Answer(curl_exit=rc, error=err.strip(), source=req.source, argv=argv)
        return answers + [missing] * (req.count - len(answers))


def parse_curl(out: str, *, source=None, argv=(), error: str = "", rc: int = 0) -> list[Answer]:
    """curl's output for one or more URLs, each body followed by a WRITE_OUT line; a
    write-out line not yet complete (streamed output) is left for the next call."""
    segments = out.split(MARK)
    answers, body = [], segments[0]
    for segment in segments[1:]:
        meta, newline, following = segment.partition("\n")
        if not newline:
            break
        status, code, seconds, backend, cookie = (meta.strip().split(" ", 4) + [""] * 5)[:5]
        headers = {k: v for k, v in (("x-backend", backend), ("set-cookie", cookie.strip())) if v}
        # one curl run shares its stderr: it explains only the requests that got no answer
        answers.append(Answer(int(status or 0), parse_body(body), headers, error=error if not int(status or 0) else "",
                              curl_exit=int(code or rc or 0), seconds=float(seconds or 0),
                              source=source, argv=list(argv)))
        body = following
    return answers


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 4)


def request(via, client: str | None | Credentials = "alice", **options) -> Answer:
    """One request through transport ``via`` (`Host` or `Container`), on a new connection.

    Args:
        via: the transport.
        client: a lab client's name, None for no certificate, or Credentials.
        **options: the other fields of `Request` (path, port, address, source, cookie,
            headers, timeout, tls_version).
    """
    return via.send(Request(client, **options))[0]


def request_many(via, client: str | None | Credentials = "alice", *, count: int, **options) -> list[Answer]:
    """``count`` requests in a row, each on a new connection, resuming the first's TLS session."""
    return via.send(Request(client, count=count, **options))


def command(via, client: str | None | Credentials = "alice", **options) -> list[str]:
    """The command a person would type to send the same request (no --write-out)."""
    return _readable(via.argv(Request(client, **options)))


def _readable(argv: list) -> list:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "-w":
            skip = True
        else:
            out.append(arg)
    return out


@dataclass
class Listener:
    """One design's listener as a transport reaches it (from the client container: the load
    balancer's internet-side address and the container port); every answer is kept."""

    via: object
    design: str
    address: str | None
    port: int | None
    history: list = field(default_factory=list)

    @property
    def box(self) -> ClientContainer:
        return self.via.box

    def options(self, path: str = "/whoami", **more) -> dict:
        return {"path": path, "port": self.port, "address": self.address, **more}

    def get(self, client="alice", source=None, path="/whoami", cookie=None, headers=None) -> Answer:
        answer = request(self.via, client, **self.options(path, source=source, cookie=cookie,
                                                          headers=headers or {}))
        self.history.append(answer)
        return answer

    def get_many(self, client="alice", source=None, count=3, path="/whoami") -> list[Answer]:
        """``count`` requests from one curl process, each on a new connection: curl resumes
        the TLS session of the first (as browsers do)."""
        answers = request_many(self.via, client, count=count, **self.options(path, source=source))
        self.history.extend(answers)
        return answers

    def command(self, client="alice", source=None, path="/whoami", cookie=None, headers=None) -> list[str]:
        return command(self.via, client, **self.options(path, source=source, cookie=cookie, headers=headers or {}))


def from_url(url: str) -> dict:
    """``path``/``port`` options for an https://www.lab.test[:port]/path URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname != SERVER_NAME:
        raise ValueError(f"{url}: the lab's clients ask for {SERVER_NAME}")
    return {"path": parts.path + (f"?{parts.query}" if parts.query else ""), "port": parts.port}
