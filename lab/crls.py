"""The lab's CRL bundle (crl.pem): one CRL per CA in the chain, root's first, because
nginx's ``ssl_crl`` needs a CRL for every CA it verifies against.

Read it back (``load_crls``), carry its revocations and CRL numbers over to freshly
loaded CAs (``keep_revocations``), tell when it must be re-signed (``due``), and sign a
new one (``bundle``). Signing itself is lab/pki.py's ``CA.crl``.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from . import pki


def load_crls(path: Path) -> list:
    """Every CRL in a PEM bundle (crl.pem holds the root's, then the intermediate's)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return []
    crls = []
    for block in re.findall(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", data, re.S):
        try:
            crls.append(x509.load_pem_x509_crl(block))
        except ValueError:
            continue
    return crls


def keep_revocations(crl_path: Path, authorities) -> None:
    """Carry over what the current CRLs revoke, and their CRL numbers (when signed by these same CAs)."""
    for crl in load_crls(crl_path):
        for authority in authorities:
            if crl.issuer == authority.cert.subject and signed_by(crl, authority):
                for entry in crl:
                    authority.revoke(entry.serial_number, entry.revocation_date_utc)
                authority.crl_number = max(authority.crl_number, _number(crl))


def _number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (x509.ExtensionNotFound, ValueError):
        return 0


def signed_by(crl: x509.CertificateRevocationList, authority: pki.CA) -> bool:
    """Whether ``authority``'s key signed ``crl``."""
    try:
        return crl.is_signature_valid(authority.cert.public_key())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False


def bundle(authorities, last_update: dt.datetime, next_update: dt.datetime | None = None) -> bytes:
    """One PEM file, one freshly signed CRL per CA in ``authorities`` (in that order)."""
    return b"".join(a.crl_pem(last_update=last_update, next_update=next_update).bytes()
                    for a in authorities)


def due(path: Path, authorities, by: dt.datetime) -> bool:
    """Whether the bundle in ``path`` must be re-signed: a CA's CRL is missing, signed by
    another key, or no longer current at ``by`` (nginx rejects every client once it is stale)."""
    crls = {crl.issuer: crl for crl in load_crls(path)}
    for authority in authorities:
        crl = crls.get(authority.cert.subject)
        if crl is None or not signed_by(crl, authority):
            return True
        if crl.next_update_utc is None or crl.next_update_utc < by:
            return True
    return False
