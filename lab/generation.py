"""The generation: a fingerprint of everything a rendering depends on (settings, templates,
the CA, CRLs and certificates the servers load). Every rendered config carries it, and `lab
reload` waits until each server reports the new one."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from . import resources
from .certs import Layout
from .settings import Settings


def _mounted(settings: Settings) -> list[Path]:
    """The certificate files the servers load (a change needs a reload to take effect); a key
    is renewed with its certificate, so the certificates stand for them."""
    lay = Layout(Path(settings.certs_dir))
    return [lay.ca_cert, lay.crl, lay.server_cert, lay.health_cert, lay.partner_cert, lay.partner_crl]


def fingerprint(settings: Settings) -> str:
    """A fingerprint of everything a rendering depends on: settings, templates, and the CA,
    CRL and certificates the servers load. The running servers report theirs, so `lab
    reload` knows when the new one serves."""
    # what the user chose and what the lab inferred render alike: fingerprint the values only
    values = replace(settings, designs_auto=False, internet_auto=False, vpc_auto=False)
    digest = hashlib.sha256(repr(values).encode())
    for template in sorted(resources.path("nginx").glob("*.j2")) + sorted(resources.path("haproxy").glob("*.j2")):
        digest.update(template.read_bytes())
    for path in _mounted(settings):
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()[:12]
