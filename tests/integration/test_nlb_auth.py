"""Seed claim C1: with TLS passing through the NLB, the backends authenticate clients by certificate.

Every accepted case is paired with refusals: a certificate the backends must not accept
gets HTTP 400 with nginx's own verdict ($ssl_client_verify), in the response and in the log.
"""

import json

import pytest
from cryptography import x509

from lab import certs, pemfile
from lab.client import request
from lab.credentials import Credentials
from lab.containers import compose_container


def cert(certs_dir, name):
    return pemfile.load_cert(certs.Layout(certs_dir).client_cert(name))


@pytest.mark.parametrize("name", ["alice", "bob", "carol"])
def test_valid_client_is_authenticated_through_the_nlb(certs_dir, from_host, nlb_port, name):
    reply = request(from_host, name, port=nlb_port)
    assert reply.status == 200, reply.body
    body = reply.body
    issued = cert(certs_dir, name)
    assert body["backend"] in ("web1", "web2")
    assert body["client_verify"] == "SUCCESS"
    assert body["client_subject"] == issued.subject.rfc4514_string()
    assert body["client_issuer"] == issued.issuer.rfc4514_string()
    assert int(body["client_serial"], 16) == issued.serial_number
    assert body["tls_protocol"] in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("name", [None, "rogue-ca"])
def test_refusal_says_why_and_echoes_nothing_of_the_identity(certs_dir, from_host, nlb_port, name):
    """The full table of refusals is tests/integration/test_client_cert_matrix.py."""
    reply = request(from_host, name, port=nlb_port)
    assert reply.status == 400
    assert reply.body["error"] == "client certificate refused"
    assert reply.body["client_verify"].startswith(("NONE", "FAILED:"))
    assert set(reply.body) == {"error", "backend", "listener", "client_verify"}


def test_refusal_reason_is_in_the_backend_log(lab, certs_dir, from_host, nlb_port):
    reply = request(from_host, "expired", port=nlb_port)
    serial = cert(certs_dir, "expired").serial_number
    logs = lab.stack.compose.logs(reply.body["backend"], tail=200)
    entries = [json.loads(line.split("|", 1)[1]) for line in logs.splitlines()
               if "|" in line and line.split("|", 1)[1].strip().startswith("{")]
    mine = [e for e in entries if e["client_serial"] and int(e["client_serial"], 16) == serial]
    assert mine, f"no log line for serial {serial}"
    assert mine[-1]["client_verify"] == "FAILED:certificate has expired"
    assert mine[-1]["status"] == 400


def test_server_certificate_is_checked_by_the_client(certs_dir, from_host, nlb_port):
    """Negative control for the client side: trusting another CA, the handshake fails."""
    trusting_rogue = Credentials(certs_dir, "alice", ca=certs.Layout(certs_dir).rogue_cert)
    answer = request(from_host, trusting_rogue, port=nlb_port)
    assert (answer.status, answer.error) == (0, "CERTIFICATE_VERIFY_FAILED")
    assert not answer.handshake_failed  # the client gave up, the server refused nothing
    assert request(from_host, "alice", port=nlb_port).status == 200  # the control: the lab CA works


def test_tls_passes_through_untouched(lab, docker_client, certs_dir, nlb_port):
    """The certificate the client sees is the backends' own, and the NLB holds no server key."""
    import socket

    nlb = compose_container(docker_client, lab.settings.project, "nlb")
    mounted = [m["Source"] for m in nlb.attrs["Mounts"]]
    assert not any(src.endswith("/server") or src.endswith(".key") for src in mounted), mounted

    ctx = Credentials(certs_dir, None).ssl_context()
    with socket.create_connection(("127.0.0.1", nlb_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="www.lab.test") as tls:
            served = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    assert served == pemfile.load_cert(certs.Layout(certs_dir).server_cert)
