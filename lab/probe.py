"""Real clients against a running lab: requests from the host, curl from the client
container, and HAProxy's runtime API.

Traffic goes only to 127.0.0.1 (published ports) and to the lab's own containers.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import requests

from .certs import CLIENT_NAMES, Layout
from .errors import CertsMissing, NotReached, StackError

CLIENT_CERTS = "/certs"  # where compose mounts certs/ca.pem and certs/clients in the client


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


class RuntimeAPI:
    """HAProxy's runtime API on the UNIX socket a load balancer keeps in the host's build
    folder (build/<project>/run/<lb>/admin.sock): the operator's, and nobody else's."""

    def __init__(self, socket_path: Path, timeout: float = 5.0):
        self.path = Path(socket_path)
        self.timeout = timeout

    def command(self, line: str) -> str:
        """Send one command; return HAProxy's whole answer.

        Raises:
            StackError: when the socket is not there or nobody answers on it.
        """
        try:
            with _unix_connect(self.path, self.timeout) as sock:
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except FileNotFoundError:
            raise StackError(f"no runtime API at {self.path}: is this load balancer running? "
                             "(`lab status`, `lab up`)") from None
        except ConnectionRefusedError:
            raise StackError(f"the runtime API at {self.path} does not answer: the load balancer "
                             "is stopped or restarting (`lab status`, `lab logs`)") from None
        except PermissionError:
            raise StackError(f"{self.path} belongs to the user who started the lab: run `lab` as "
                             "that user (or with sudo)") from None
        except OSError as exc:  # a timeout, a reset: a worker starting or stopping
            raise StackError(f"the runtime API at {self.path} failed ({type(exc).__name__}): "
                             "see `lab status`, `lab logs`") from None
        return b"".join(chunks).decode()

    def stick_table(self, table: str = "web") -> dict:
        """client IP -> server name, from `show table`."""
        entries = {}
        for line in self.command(f"show table {table}").splitlines():
            key = re.search(r"\bkey=(\S+)", line)
            server = re.search(r"\bserver_key=(\S+)", line) or re.search(r"\bserver_id=(\S+)", line)
            if key and server:
                entries[key.group(1)] = server.group(1)
        return entries

    def clear_table(self, table: str = "web") -> None:
        self.command(f"clear table {table}")

    def forget(self, addresses, table: str = "web") -> None:
        """Drop the pins of these source addresses only (the next request is balanced afresh)."""
        for address in addresses:
            self.command(f"clear table {table} key {address}")

    def server_states(self, backend: str = "web") -> dict:
        """server name -> "UP"/"DOWN"/"MAINT"..., from `show stat`."""
        return {name: status for name, (status, _) in self.server_checks(backend).items()}

    def server_checks(self, backend: str = "web") -> dict:
        """server name -> (status, last health check), e.g. ("UP", "L7OK"); a server no
        check has reached yet says ("UP", "INI"): HAProxy starts servers UP."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",") if lines else []
        checks = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
                # "* L7OK": a check is running right now; the last result is what follows
                checks[row["svname"]] = (row.get("status", ""), row.get("check_status", "").removeprefix("* "))
        return checks

    def wait_up(self, names=None, timeout: float = 15, backend: str = "web") -> None:
        """Wait until ``names`` (default: every server of ``backend``) report UP.

        Raises:
            NotReached: naming the servers and the states last seen.
        """
        def up():
            states = self.server_states(backend)
            wanted = states if names is None else names
            return bool(states) and all(states.get(n) == "UP" for n in wanted) and states
        label = "every server" if names is None else ", ".join(names) or "no server"
        wait_for(up, timeout, what=f"{label} of {backend} UP")


def _unix_connect(path: Path, timeout: float) -> socket.socket:
    """A connected AF_UNIX socket; paths beyond the kernel's 107-byte limit are reached
    through /proc/self/fd (deep build folders are common)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        if len(str(path).encode()) < 100:
            sock.connect(str(path))
            return sock
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            sock.connect(f"/proc/self/fd/{fd}/{path.name}")
        finally:
            os.close(fd)
        return sock
    except BaseException:
        sock.close()
        raise


def compose_container(dc: docker.DockerClient, project: str, service: str):
    """The running container of ``service`` in compose ``project``."""
    found = dc.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                  f"com.docker.compose.service={service}"]})
    if not found:
        raise StackError(f"{project}: service {service} is not running (`lab status`, `lab up`)")
    return found[0]


class ClientContainer:
    """curl and openssl inside the lab's client container, from a chosen source address."""

    def __init__(self, dc: docker.DockerClient, project: str):
        self.container = compose_container(dc, project, "client")

    def exec(self, argv: list[str]) -> tuple[int, str]:
        rc, out = self.container.exec_run(list(argv), demux=False)
        return rc, out.decode(errors="replace")

    def exec_stream(self, argv: list[str]):
        """Run ``argv``; yield its standard output as it comes (standard error is dropped:
        a message there could land inside a line of output)."""
        _, chunks = self.container.exec_run(list(argv), stream=True, demux=True)
        for out, _err in chunks:
            if out:
                yield out.decode(errors="replace")

    def exec_split(self, argv: list[str]) -> tuple[int, str, str]:
        """Run ``argv``; return (exit code, stdout, stderr)."""
        rc, (out, err) = self.container.exec_run(list(argv), demux=True)
        return rc, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")

    def curl_argv(self, client: str | None, source_ip: str | None, urls: list[str], extra=(),
                  write_out: str = "\n%{http_code}\n", max_time: float = 5) -> list[str]:
        """curl with the lab CA, ``client``'s certificate, a new connection per URL."""
        argv = ["curl", "-sS", "--max-time", str(max_time), "--cacert", f"{CLIENT_CERTS}/ca.pem",
                "-H", "Connection: close", "-w", write_out]
        if client:
            argv += ["--cert", f"{CLIENT_CERTS}/clients/{client}.crt",
                     "--key", f"{CLIENT_CERTS}/clients/{client}.key"]
        if source_ip:
            argv += ["--interface", source_ip]
        return argv + list(extra) + list(urls)

    def get(self, client: str | None = "alice", source_ip: str | None = None, count: int = 1,
            url: str = "https://www.lab.test/whoami") -> list[Reply]:
        """``count`` requests, each on a new connection, from ``source_ip``.

        Raises:
            StackError: when curl itself fails (its message included).
        """
        rc, out = self.exec(self.curl_argv(client, source_ip, [url] * count))
        replies = _split_curl(out)
        if rc != 0 or len(replies) != count:
            raise StackError(f"curl from the client container exited {rc} with {len(replies)}/{count} "
                             f"answers: {out.strip()[-300:]}")
        return replies


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


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; return that value.

    Raises:
        NotReached: naming ``what`` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (requests.RequestException, OSError, StackError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise NotReached(f"{what} not reached within {timeout:.0f}s (last: {last!r}): "
                     "see `lab status` and `lab logs`")
