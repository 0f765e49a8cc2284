"""A client certificate presented with somebody else's private key.

Every ordinary client (curl, openssl s_client, Python's ssl) checks that the key matches
the certificate before it sends anything (test_client_cert_matrix: KEY_VALUES_MISMATCH).
tlslite-ng, a pure-Python TLS stack, does not: it sends alice's certificate and signs the
handshake (CertificateVerify) with bob's key. The server must end the handshake with a
decrypt_error alert; no HTTP answer, no access-log line.

TLS 1.2 only: tlslite-ng 0.8.2 cannot complete a TLS 1.3 session with nginx 1.22 even
with a matching key (docs/reliability.md records the TLS 1.3 result from Java's JSSE).
"""

import socket

import pytest

tlslite = pytest.importorskip("tlslite.api")

from lab import certs  # noqa: E402


def handshake(port, cert_path, key_path):
    """TLS 1.2 with the given chain and key; returns ("http", status line) or ("alert", name)."""
    chain = tlslite.X509CertChain()
    chain.parsePemList(cert_path.read_text())
    key = tlslite.parsePEMKey(key_path.read_text(), private=True, implementations=["python"])
    settings = tlslite.HandshakeSettings()
    settings.minVersion = settings.maxVersion = (3, 3)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = tlslite.TLSConnection(sock)
    try:
        conn.handshakeClientCert(chain, key, settings=settings, serverName="www.lab.test")
        conn.write(b"GET /whoami HTTP/1.1\r\nHost: www.lab.test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.read():
            data += chunk
        return "http", data.split(b"\r\n", 1)[0].decode() + " " + data.split(b"\r\n\r\n", 1)[1].decode()
    except tlslite.TLSRemoteAlert as alert:
        return "alert", str(alert)
    finally:
        sock.close()


@pytest.mark.parametrize("path", ["nlb", "web1", "web2"])
def test_forged_certificate_verify_is_refused(lab, certs_dir, path):
    port = lab.stack.nlb_port() if path == "nlb" else lab.stack.direct_port(path)
    lay = certs.Layout(certs_dir)
    kind, detail = handshake(port, lay.client_cert("alice"), lay.client_key("alice"))
    assert kind == "http" and detail.startswith("HTTP/1.1 200 OK") and '"client_verify":"SUCCESS"' in detail
    kind, detail = handshake(port, lay.client_cert("alice"), lay.client_key("bob"))
    assert (kind, detail) == ("alert", "decrypt_error")
