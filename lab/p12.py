"""PKCS#12 bundles of the client certificates, for browsers and key stores.

    certs/p12/<name>.p12   key, certificate and the chain below the root (carol's intermediate)

Firefox, Chrome and Windows read the modern encryption (PBES2: PBKDF2 + AES-256-CBC, SHA-256
MAC). macOS Keychain still wants the legacy one (PBE-SHA1-3DES, SHA-1 MAC): `legacy=True`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, PrivateFormat, pkcs12

from . import certs, pemfile
from .errors import CertsMissing

DEFAULT_PASSWORD = "mtls-lab"  # printed by `lab certs --p12`: the bundles are test identities


@dataclass(frozen=True)
class Bundles:
    """What `write_bundles` wrote."""

    folder: Path
    files: list
    legacy: bool


def _encryption(password: bytes, legacy: bool):
    if not legacy:
        return BestAvailableEncryption(password)
    return (PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(2048)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())
            .build(password))


def write_bundles(root: Path, password: str = DEFAULT_PASSWORD, *, legacy: bool = False,
                  names=certs.CLIENT_NAMES) -> Bundles:
    """Write one PKCS#12 file per client certificate into ``root``/p12 (files 0600).

    Raises:
        CertsMissing: when the PKI is not there (`lab certs` makes it).
        ValueError: for an empty password.
    """
    if not password:
        raise ValueError("a PKCS#12 bundle needs a password (browsers refuse empty ones): choose one")
    lay = certs.require_pki(root)
    folder = lay.root / "p12"
    written = []
    for name in names:
        cert_path, key_path = lay.client_cert(name), lay.client_key(name)
        try:
            chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
            key = pemfile.load_private_key(key_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise CertsMissing(f"{cert_path} cannot be bundled ({exc}): run `lab certs`") from None
        data = pkcs12.serialize_key_and_certificates(
            name.encode(), key, chain[0], chain[1:] or None, _encryption(password.encode(), legacy))
        path = folder / f"{name}.p12"
        pemfile.write_file(path, data, private=True)
        written.append(path)
    folder.chmod(0o700)
    return Bundles(folder, written, legacy)


def remove_bundles(root: Path) -> Path | None:
    """Remove ``root``/p12, whose bundles hold certificates that were just replaced.

    Returns:
        The folder removed, or None when there was none.
    """
    folder = Path(root) / "p12"
    if not folder.exists():
        return None
    shutil.rmtree(folder)
    return folder
