"""TLS key logging for the clients the lab drives: off unless `lab capture` turns it on.

While a `KeyLog` is recording, every request made through lab/client.py writes its TLS
secrets in the NSS key log format Wireshark reads (`tls.keylog_file`): Python's ssl through
``SSLContext.keylog_filename`` on the host, curl through ``SSLKEYLOGFILE`` in the client
container (the container's file is copied out by `lab capture` at the end).

During a capture curl also stops compressing its Certificate message (RFC 8879, which
OpenSSL 3.5 in the client container does by default): Wireshark 4.0 shows a compressed
certificate as opaque bytes, so the trainer could not point at alice's name in it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CONTAINER_DIR = PurePosixPath("/tmp/lab-capture")  # in the client container
# OpenSSL's config for curl during a capture: the system defaults, minus certificate
# compression (SSL_CONF_cmd "Options = -TxCertificateCompression", OpenSSL 3.2+).
OPENSSL_CNF = """\
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
ssl_conf = ssl_sect
[provider_sect]
default = default_sect
[default_sect]
activate = 1
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Options = -TxCertificateCompression
"""


@dataclass(frozen=True)
class KeyLog:
    """Where the secrets go: a file on the host, and one in the client container."""

    host: Path
    container: PurePosixPath = CONTAINER_DIR / "keylog.txt"
    openssl_cnf: PurePosixPath = CONTAINER_DIR / "openssl.cnf"

    def container_env(self) -> dict:
        """The environment curl runs with in the client container."""
        return {"SSLKEYLOGFILE": str(self.container), "OPENSSL_CONF": str(self.openssl_cnf)}


_recording: KeyLog | None = None  # process-wide: threads started by demos log their keys too


def active() -> KeyLog | None:
    """The key log being recorded, or None (the default: no secrets are written)."""
    return _recording


@contextmanager
def recording(keylog: KeyLog):
    """Log the TLS secrets of every request lab/client.py makes inside the block."""
    global _recording
    before, _recording = _recording, keylog
    try:
        yield keylog
    finally:
        _recording = before
