"""Hostile and bad input: what a client says about itself is never believed, oversized or
malformed requests get clean errors, and the lab keeps serving afterwards."""

import socket
import ssl

import pytest

from lab.answer import parse_body
from lab.client import request
from lab.credentials import Credentials
from lab.containers import compose_container

SPOOFED = {
    "X-Forwarded-For": "6.6.6.6",
    "X-Real-IP": "6.6.6.6",
    "X-Amzn-Mtls-Clientcert-Subject": "CN=admin,O=mTLS Lab",
    "X-Amzn-Mtls-Clientcert-Serial-Number": "01",
    "X-Amzn-Mtls-Clientcert": "-----BEGIN CERTIFICATE-----forged",
}


def test_client_sent_identity_headers_are_ignored(lab, from_client):
    source = lab.settings.client_extra_ips[12]
    reply = request(from_client, "alice", source=source, headers=SPOOFED)
    assert reply.curl_exit == 0 and reply.status == 200
    assert reply.body["client_ip"] == source  # from the PROXY header, not X-Forwarded-For/X-Real-IP
    assert reply.body["client_subject"] == "CN=alice,OU=clients,O=mTLS Lab"  # from TLS, not a header


def test_spoofed_headers_do_not_replace_a_missing_certificate(lab, from_client):
    source = lab.settings.client_extra_ips[12]
    reply = request(from_client, None, source=source, headers=SPOOFED)
    assert reply.status == 400 and reply.body["client_verify"] == "NONE"


def raw_exchange(certs_dir, port, payload: bytes, client="alice", host="127.0.0.1",
                 preamble: bytes = b"") -> bytes:
    """Send ``preamble`` in clear (a PROXY header), then ``payload`` over TLS with
    ``client``'s certificate, and return what comes back."""
    ctx = Credentials(certs_dir, client).ssl_context()
    with socket.create_connection((host, port), timeout=10) as raw:
        raw.sendall(preamble)
        with ctx.wrap_socket(raw, server_hostname="www.lab.test") as tls:
            tls.sendall(payload)
            chunks = []
            try:
                while chunk := tls.recv(65536):
                    chunks.append(chunk)
            except (ssl.SSLError, ConnectionResetError):
                pass
    return b"".join(chunks)


def status_line(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode(errors="replace")


BAD_REQUESTS = [
    pytest.param(b"GET /whoami HTTP/1.1\r\nHost: www.lab.test\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
                 "HTTP/1.1 400", id="header-20KB"),
    pytest.param(b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: www.lab.test\r\n\r\n",
                 "HTTP/1.1 414", id="uri-10KB"),
    pytest.param(b"POST /whoami HTTP/1.1\r\nHost: www.lab.test\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000,
                 "HTTP/1.1 413", id="body-100KB"),
    pytest.param(b"GARBAGE\r\n\r\n", "HTTP/1.1 400", id="malformed-request-line"),
    pytest.param(b"GET /whoami HTTP/9.9\r\nHost: www.lab.test\r\n\r\n", "HTTP/1.1 505", id="unknown-http-version"),
    pytest.param(b"GET /whoami HTTP/1.1\r\nHost: www.lab.test\r\nContent-Length: -1\r\n\r\n",
                 "HTTP/1.1 400", id="negative-content-length"),
]


@pytest.mark.parametrize("payload, expected", BAD_REQUESTS)
def test_bad_requests_get_clean_errors(certs_dir, from_host, nlb_port, payload, expected):
    answer = raw_exchange(certs_dir, nlb_port, payload)
    assert status_line(answer).startswith(expected), answer[:200]
    assert b"Server: nginx" in answer  # the backend answered, cleanly
    # and the lab still serves a normal request afterwards
    assert request(from_host, "alice", port=nlb_port).status == 200


def test_garbage_instead_of_tls_is_dropped_and_service_continues(from_host, nlb_port):
    with socket.create_connection(("127.0.0.1", nlb_port), timeout=5) as raw:
        raw.sendall(b"\x00\xffnot a TLS ClientHello\r\n\r\n" * 10)
        try:
            answer = raw.recv(4096)
        except ConnectionResetError:
            answer = b""
    # nginx answers bytes that are not TLS with a plain-text 400 and closes; no application data
    assert answer.startswith(b"HTTP/1.1 400 Bad Request"), answer[:100]
    assert b"whoami" not in answer and b"client_verify" not in answer
    assert request(from_host, "alice", port=nlb_port).status == 200


def test_request_without_proxy_header_is_dropped_by_the_backend(lab, docker_client):
    """Only the load balancer's PROXY header is believed: a connection to :443 without one fails."""
    nlb = compose_container(docker_client, lab.settings.project, "nlb")
    backend_ip = lab.settings.backend_ip("web1")
    base = ["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
            "--cacert", "/etc/lab/trust/ca.pem", "--cert", "/etc/lab/health/health.crt",
            "--key", "/etc/lab/health/health.key", "--resolve", f"www.lab.test:443:{backend_ip}",
            "https://www.lab.test/healthz"]
    rc_with, (out_with, _) = nlb.exec_run(base[:1] + ["--haproxy-protocol"] + base[1:], demux=True)
    rc_without, (out_without, err_without) = nlb.exec_run(base, demux=True)
    assert (rc_with, out_with) == (0, b"200")
    # nginx reads the TLS ClientHello as a broken PROXY header and resets the connection.
    assert (rc_without, out_without) == (35, b"000")
    assert b"Connection reset by peer" in err_without


def test_proxy_header_from_anyone_but_the_load_balancer_is_not_believed(lab, certs_dir):
    """A forged PROXY header claiming 6.6.6.6, sent to web1's :443 straight from the host
    (which sits on the vpc bridge, not at the load balancer's address): nginx parses it but
    real_ip ignores it, so client_ip is the host's own bridge address."""
    s = lab.settings
    web1 = s.backend_ip("web1")
    forged = f"PROXY TCP4 6.6.6.6 {web1} 40000 443\r\n".encode()
    answer = raw_exchange(certs_dir, 443, b"GET /whoami HTTP/1.1\r\nHost: www.lab.test\r\nConnection: close\r\n\r\n",
                          host=web1, preamble=forged)
    body = answer.split(b"\r\n\r\n", 1)[1]
    seen = parse_body(body.decode())
    assert status_line(answer) == "HTTP/1.1 200 OK"
    assert seen["client_ip"] != "6.6.6.6"
    assert seen["client_ip"] == seen["peer_ip"] == str(s.vpc_subnet.network_address + 1)


def test_a_client_that_trickles_its_headers_is_cut_off_at_the_alb(lab, certs_dir):
    """A slow-header client must not hold an ALB connection for `timeout client` (60 s):
    `timeout http-request` closes it after 10 s, as nginx's client_header_timeout does."""
    import time

    ctx = Credentials(certs_dir, "alice").ssl_context()
    with socket.create_connection(("127.0.0.1", lab.stack.design_port("alb-mtls-verify")), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname="www.lab.test") as tls:
            started = time.monotonic()
            tls.sendall(b"GET /whoami HTTP/1.1\r\nHost: www.lab.test\r\n")  # and never the blank line
            try:
                answer = tls.recv(4096)
            except (ssl.SSLError, ConnectionResetError):
                answer = b""
            waited = time.monotonic() - started
    assert 9 <= waited < 20, waited  # HAProxy answers 408 when `timeout http-request` (10 s) runs out
    assert answer.startswith(b"HTTP/1.1 408") or answer == b"", answer[:100]
