"""The sorry site's own server certificate (the seed's CloudFront holds one for the custom
domain): certs/cdn/server.crt and server.key, for www.lab.test, issued by the lab CA, kept
while it is current and signed by that CA, issued anew otherwise."""

from __future__ import annotations

from pathlib import Path

from . import pki, pkicheck
from .certs import SERVER_NAME, Layout
from .errors import PkiDamaged

UNIT = "sorry site (cdn)"
SANS = (SERVER_NAME, "cdn", "localhost", "127.0.0.1")


def paths(root: Path) -> tuple[Path, Path]:
    """(certificate chain, key) of the sorry site; the folder is mounted at /etc/lab/server."""
    folder = Path(root) / "cdn"
    return folder / "server.crt", folder / "server.key"


def ensure(root: Path) -> bool:
    """Issue the sorry site's certificate unless a current one from the lab CA is there.

    Returns:
        True when it was issued now.

    Raises:
        PkiDamaged: when the lab CA cannot be read (run `lab certs` first) or a file cannot be written.
    """
    lay = Layout(Path(root))
    ca = pkicheck.load_ca_or_none(lay.ca_cert, lay.ca_key)
    if ca is None:
        raise PkiDamaged(f"no usable lab CA in {lay.root}: run `lab certs` before `lab up`")
    cert_path, key_path = paths(root)
    chain = pkicheck.pair_ok(cert_path, key_path)
    if chain is not None and pkicheck.is_for(chain[0], SERVER_NAME, "server") \
            and pkicheck.signed_by(chain[0], ca) and pkicheck.key_type_of(chain[0]) == pkicheck.key_type_of(ca.cert) \
            and pkicheck.still_demonstrates(chain[0], "valid", pki.utcnow()):
        return False
    leaf = ca.issue_cert(SERVER_NAME, sans=SANS, usage="server", key_type=pkicheck.key_type_of(ca.cert), unit=UNIT)
    pkicheck.make_folder(cert_path.parent)
    try:
        leaf.chain_pem.write_to_path(cert_path)
        leaf.private_key_pem.write_to_path(key_path)
    except OSError as exc:
        raise PkiDamaged(f"cannot write {cert_path.parent} ({exc.strerror or exc}): "
                         "check that the certs folder is one you can write to") from None
    return True
