"""manifest.json: what a certs folder holds, serials and dates (for `lab status` and tests).

lab/certs.py writes it after every ``ensure_pki``, only when it would say something new.
"""

from __future__ import annotations

import json

from cryptography import x509

from . import crls, pemfile


def _describe(cert: x509.Certificate) -> dict:
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "X"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


def document(lay, key_type: str, clients) -> bytes:
    """The manifest of the certs folder ``lay`` (a certs.Layout) as JSON bytes.

    Args:
        lay: the folder's layout.
        key_type: "ec" or "rsa".
        clients: the ClientSpecs whose certificates it lists, with the lesson of each.
    """
    doc = {
        "key_type": key_type,
        "ca": _describe(pemfile.load_cert(lay.ca_cert)),
        "intermediate_ca": _describe(pemfile.load_cert(lay.intermediate_cert)),
        "server": _describe(pemfile.load_cert(lay.server_cert)),
        "crls": [
            {
                "issuer": crl.issuer.rfc4514_string(),
                "last_update": crl.last_update_utc.isoformat(),
                "next_update": crl.next_update_utc.isoformat(),
                "revoked_serials": [format(r.serial_number, "X") for r in crl],
            }
            for crl in crls.load_crls(lay.crl)
        ],
        "clients": {
            spec.name: {**_describe(pemfile.load_cert(lay.client_cert(spec.name))),
                        "demonstrates": spec.demonstrates}
            for spec in clients
        },
    }
    return (json.dumps(doc, indent=2) + "\n").encode()
