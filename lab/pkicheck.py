"""Whether the files of a PKI on disk can be used: each pair loads and matches, each
certificate was signed by the CA it names, is the certificate it should be, and still shows
what it is meant to show. lab/certs.py decides what to reissue from these answers.

Checks answer True/False or None; the few that refuse (a damaged root CA, a file where a
folder belongs) raise PkiDamaged with the fix.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import pemfile, pki
from .errors import PkiDamaged

# A certificate (or CRL) this close to its end counts as due: renewed before it runs out.
RENEW_BEFORE = dt.timedelta(days=7)


class KeyMismatch(ValueError):
    """A private key that loads, but belongs to another certificate."""


def key_type_of(cert: x509.Certificate) -> str:
    """"ec" or "rsa" (or the key class's name for anything else)."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec"
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    return type(key).__name__


def matching_key(cert: x509.Certificate, key_pem: bytes):
    """The private key in ``key_pem`` (unencrypted, EC or RSA), if it is ``cert``'s.

    Raises:
        KeyMismatch: when it is another certificate's key.
        ValueError: saying why the key does not load.
    """
    key = pemfile.load_private_key(key_pem)
    if not pki.keys_match(cert, key):
        raise KeyMismatch("the key does not match the certificate")
    return key


def pair_ok(cert_path: Path, key_path: Path) -> list | None:
    """The certificates in ``cert_path`` (leaf first) if both files load and the key
    (unencrypted, EC or RSA) matches the leaf, else None."""
    chain = pemfile.load_chain(cert_path)
    if not chain:
        return None
    try:
        matching_key(chain[0], pemfile.read(key_path))
    except ValueError:
        return None
    return chain


def crt_bundle_ok(bundle_path: Path, cert_path: Path) -> bool:
    """``bundle_path`` holds ``cert_path``'s chain and the key that matches it (HAProxy's ``crt``)."""
    try:
        data = pemfile.read(bundle_path)
        chain = x509.load_pem_x509_certificates(data)  # at least one, or ValueError
        matching_key(chain[0], data)
    except ValueError:
        return False
    return chain == pemfile.load_chain(cert_path)


def still_demonstrates(cert: x509.Certificate, window: str, now: dt.datetime) -> bool:
    """Whether ``cert`` still shows its ``window`` ("valid", "expired" or "future") at ``now``."""
    if window == "expired":
        return cert.not_valid_after_utc < now
    if window == "future":
        return cert.not_valid_before_utc > now + dt.timedelta(days=1)
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc > now + RENEW_BEFORE


def ca_current(authority: pki.CA, issuer: pki.CA | None, key_type: str, now: dt.datetime) -> bool:
    """Whether a CA may stay: the lab's key type, valid now and not due, signed by
    ``issuer`` (None: by itself)."""
    cert = authority.cert
    return (key_type_of(cert) == key_type and cert.not_valid_before_utc <= now
            and cert.not_valid_after_utc >= now + RENEW_BEFORE and signed_by(cert, issuer))


def is_for(cert: x509.Certificate, name: str, usage: str) -> bool:
    """Whether ``cert`` names ``name`` (its CN) and allows ``usage`` ("client", "server")."""
    cns = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    try:
        ekus = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return False
    return cns == [name] and set(pki.USAGES[usage]) <= ekus


def signed_by(cert: x509.Certificate, authority: pki.CA | None) -> bool:
    """Whether ``authority`` (None: the certificate itself) issued and signed ``cert``."""
    issuer = cert if authority is None else authority.cert
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def load_ca(cert_path: Path, key_path: Path, parent: pki.CA | None = None) -> pki.CA | None:
    """The CA in ``cert_path`` and ``key_path``; None when neither exists.

    Raises:
        ValueError: naming the file and what is wrong when either exists but cannot be used.
    """
    if not (os.path.lexists(cert_path) or os.path.lexists(key_path)):
        return None
    cert_pem, key_pem = pemfile.read(cert_path), pemfile.read(key_path)
    # Piece by piece to name the file at fault; from_pem checks the same again.
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ValueError(f"{cert_path} holds no PEM certificate") from None
    try:
        matching_key(cert, key_pem)
    except KeyMismatch:
        raise ValueError(f"{key_path} is not the key of {cert_path}") from None
    except ValueError as exc:
        raise ValueError(f"{key_path}: {exc}") from None
    try:
        return pki.CA.from_pem(cert_pem, key_pem, parent=parent)
    except ValueError as exc:  # what is left: not a CA certificate
        raise ValueError(f"{cert_path}: {exc}") from None


def load_ca_or_none(cert_path: Path, key_path: Path, parent: pki.CA | None = None) -> pki.CA | None:
    """The CA, or None when it is missing or damaged (an issuing CA is simply reissued)."""
    try:
        return load_ca(cert_path, key_path, parent=parent)
    except ValueError:
        return None


def root_ca(cert_path: Path, key_path: Path, *, damaged_ok: bool = False) -> pki.CA | None:
    """The root CA on disk; None when there is none (or it is damaged and ``damaged_ok``).

    Raises:
        PkiDamaged: when the certificate or key exists but cannot be used. Replacing the root
            invalidates every certificate handed out under it, so only ``--force`` does.
    """
    try:
        ca = load_ca(cert_path, key_path)
        if ca is not None and not signed_by(ca.cert, None):
            raise ValueError(f"{cert_path} is not self-signed, so it is not a root CA")
    except ValueError as exc:
        if damaged_ok:
            return None
        fix = "run `lab certs --force` to replace the whole PKI (every certificate is reissued)"
        if isinstance(exc, pemfile.NotAFile):
            fix = "remove it, then " + fix
        elif isinstance(exc, pemfile.NoAccess):
            fix = "give yourself read access to it (it may belong to another user), or " + fix
        raise PkiDamaged(f"the lab root CA cannot be used: {exc}; {fix}") from None
    return ca


def make_folder(folder: Path) -> None:
    """Create the certs folder.

    Raises:
        PkiDamaged: when a file sits there, or it cannot be created.
    """
    if folder.exists() and not folder.is_dir():
        raise PkiDamaged(f"{folder} is a file where the lab keeps its certificates folder: "
                         "remove it (or set another certs folder), then run the command again")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PkiDamaged(f"cannot create {folder} ({exc.strerror or exc}): "
                         "check the permissions of its parent folder") from None


def check_no_obstacles(folders, files) -> None:
    """Refuse, before writing anything, when a directory sits where a file belongs (or back).

    Raises:
        PkiDamaged: naming the first obstacle and how to remove it.
    """
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise PkiDamaged(f"{folder} is a file where the lab keeps a folder: "
                             "remove it, then run the command again")
    for path in files:
        if path.is_dir():
            raise PkiDamaged(f"{path} is a directory where the lab keeps a file: "
                             f"remove it (`rm -r {path}`), then run the command again")
