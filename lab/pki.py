"""A small certificate authority, shaped like trustme's API, plus CRLs.

    ca = CA("mTLS Lab Root CA")
    leaf = ca.issue_cert("alice", usage="client")
    ca.revoke(leaf)
    ca.crl_pem().write_to_path("crl.pem")

A wrong CA is just a second ``CA()``. Keys are EC P-256 by default, RSA-2048 on
request. Everything here is in memory (lab/pemfile.py writes the files); lab/certs.py decides
what lands on disk.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .pemfile import load_private_key, write_file


class KeyType(str, enum.Enum):
    """The key algorithms the lab issues (a str, so "ec" == KeyType.EC)."""

    EC = "ec"    # P-256
    RSA = "rsa"  # 2048 bits

    def __str__(self) -> str:  # "ec" in messages and f-strings, as the plain string would be
        return self.value


KEY_TYPES = tuple(k.value for k in KeyType)
ORGANIZATION = "mTLS Lab"
# Leaves live a year; the CA outlives any leaf it signs. Browsers cap server
# certificates at 398 days (https://cabforum.org/ballot-sc31/), so stay under it.
DEFAULT_LEAF_DAYS = 365
DEFAULT_CA_DAYS = 5 * 365
DEFAULT_CRL_DAYS = 30
# Backdate notBefore a little so a client whose clock runs slightly behind still accepts.
CLOCK_SKEW = dt.timedelta(minutes=5)

USAGES = {
    "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
    "server": [ExtendedKeyUsageOID.SERVER_AUTH],
    "both": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def generate_key(key_type: str = "ec"):
    """Make a private key.

    Args:
        key_type: "ec" (P-256) or "rsa" (2048 bits).

    Returns:
        A cryptography private key object.

    Raises:
        ValueError: for an unknown key type.
    """
    if key_type == KeyType.EC:
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r}: choose one of {', '.join(KEY_TYPES)}")


def keys_match(cert_or_public_key, private_key) -> bool:
    """Whether ``private_key`` belongs to a certificate (or a public key).

    Compares SubjectPublicKeyInfo DER, which every key type has (Ed25519 keys have no
    ``public_numbers()``).

    Args:
        cert_or_public_key: an x509.Certificate or a public key.
        private_key: the private key to check.

    Returns:
        True when they are one key pair; False otherwise, or when they cannot be compared.
    """
    def spki(public_key) -> bytes:
        return public_key.public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        public = (cert_or_public_key.public_key()
                  if isinstance(cert_or_public_key, x509.Certificate) else cert_or_public_key)
        return spki(public) == spki(private_key.public_key())
    except (AttributeError, TypeError, ValueError, UnsupportedAlgorithm):
        return False


@dataclass(frozen=True)
class Blob:
    """PEM bytes with the two things one does with them (as trustme.Blob)."""

    data: bytes
    private: bool = False

    def bytes(self) -> bytes:
        return self.data

    def write_to_path(self, path) -> None:
        """Write the PEM; private material is written 0600."""
        write_file(Path(path), self.data, private=self.private)


def _key_pem(key) -> Blob:
    return Blob(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        private=True,
    )


def _cert_pem(cert: x509.Certificate) -> Blob:
    return Blob(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, unit: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
    if unit:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _san(names) -> x509.SubjectAlternativeName:
    general = []
    for name in names:
        if name.startswith("URI:"):  # a URI SAN (a SPIFFE ID, say); anything else is DNS or IP
            general.append(x509.UniformResourceIdentifier(name[4:]))
            continue
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(general)


def _window(not_before, not_after, days):
    start = not_before or (utcnow() - CLOCK_SKEW)
    end = not_after or (start + CLOCK_SKEW + dt.timedelta(days=days))
    if end <= start:
        raise ValueError(f"not_after ({end}) must be later than not_before ({start})")
    return start, end


def _key_usage(*, signs_certificates: bool, rsa: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=rsa and not signs_certificates,
        data_encipherment=False, key_agreement=False, key_cert_sign=signs_certificates,
        crl_sign=signs_certificates, encipher_only=False, decipher_only=False,
    )


def _build(subject: x509.Name, public_key, *, issuer: x509.Name, signer, start: dt.datetime,
           end: dt.datetime, extensions) -> x509.Certificate:
    """The one way the lab builds a certificate: subject, key, window, a random serial, the
    SubjectKeyIdentifier every certificate carries, ``extensions`` ((extension, critical)
    pairs), signed with SHA-256."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())


@dataclass
class LeafCert:
    """An issued certificate, its key and its chain up to (not including) the root."""

    cert: x509.Certificate
    private_key: object
    chain: list = field(default_factory=list)  # intermediates, leaf excluded

    @property
    def cert_pem(self) -> Blob:
        return _cert_pem(self.cert)

    @property
    def private_key_pem(self) -> Blob:
        return _key_pem(self.private_key)

    @property
    def cert_chain_pems(self) -> list[Blob]:
        return [self.cert_pem] + [_cert_pem(c) for c in self.chain]

    @property
    def chain_pem(self) -> Blob:
        """Leaf followed by its intermediates, as servers send it."""
        return Blob(b"".join(b.bytes() for b in self.cert_chain_pems))

    @property
    def private_key_and_cert_chain_pem(self) -> Blob:
        """Chain then key in one file (HAProxy's ``crt`` format); private."""
        return Blob(self.chain_pem.bytes() + self.private_key_pem.bytes(), private=True)

    @property
    def serial(self) -> int:
        return self.cert.serial_number


class CA:
    """A certificate authority that issues leaves and keeps a revocation list.

    Args:
        common_name: the CA's subject CN.
        key_type: "ec" or "rsa".
        parent: issue this CA from another (an intermediate) instead of self-signing.
        days: validity in days.
    """

    def __init__(self, common_name: str = "mTLS Lab Root CA", *, key_type: str = "ec",
                 parent: "CA | None" = None, days: int = DEFAULT_CA_DAYS,
                 path_length: int | None = None, _cert=None, _key=None):
        self.parent = parent
        self.revoked: dict[int, dt.datetime] = {}
        # The last CRLNumber signed; RFC 5280 wants it to grow with every CRL of this CA.
        # crls.keep_revocations raises it to what the CRLs on disk carry.
        self.crl_number = 0
        if _cert is not None:
            self.cert, self.private_key = _cert, _key
            return
        self.private_key = generate_key(key_type)
        start, end = _window(None, None, days)
        name = _name(common_name)
        extensions = [(x509.BasicConstraints(ca=True, path_length=path_length), True),
                      (_key_usage(signs_certificates=True, rsa=key_type == KeyType.RSA), True)]
        if parent:
            extensions.append((x509.AuthorityKeyIdentifier.from_issuer_public_key(
                parent.private_key.public_key()), False))
        self.cert = _build(name, self.private_key.public_key(),
                           issuer=parent.cert.subject if parent else name,
                           signer=parent.private_key if parent else self.private_key,
                           start=start, end=end, extensions=extensions)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes, parent: "CA | None" = None) -> "CA":
        """Load an existing CA (to re-sign its CRL or issue more leaves).

        Raises:
            ValueError: when either does not load, the key is encrypted or not EC/RSA,
                the key does not match, or the certificate is not a CA's.
        """
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise ValueError("the CA certificate is not a PEM certificate") from None
        try:
            key = load_private_key(key_pem)
        except ValueError as exc:
            raise ValueError(f"the CA {exc}") from None
        if not keys_match(cert, key):
            raise ValueError("the CA key does not match the CA certificate")
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except (x509.ExtensionNotFound, ValueError):
            is_ca = False
        if not is_ca:
            raise ValueError("the certificate is not a CA certificate (no basicConstraints CA:TRUE)")
        return cls(parent=parent, _cert=cert, _key=key)

    @property
    def cert_pem(self) -> Blob:
        return _cert_pem(self.cert)

    @property
    def private_key_pem(self) -> Blob:
        return _key_pem(self.private_key)

    @property
    def chain(self) -> list:
        """Certificates between this CA and the root, this CA first, root excluded."""
        if self.parent is None:
            return []
        return [self.cert] + self.parent.chain

    def issue_cert(self, common_name: str, *, sans=(), usage: str = "client",
                   key_type: str = "ec", not_before: dt.datetime | None = None,
                   not_after: dt.datetime | None = None, days: int = DEFAULT_LEAF_DAYS,
                   unit: str | None = None) -> LeafCert:
        """Issue a leaf certificate.

        Args:
            common_name: subject CN.
            sans: DNS names, IP addresses and "URI:..." for subjectAltName (servers need them).
            usage: "client", "server" or "both" (the extendedKeyUsage).
            key_type: "ec" or "rsa".
            not_before, not_after: validity window; defaults to now .. now+days.
            unit: optional OU.

        Returns:
            The LeafCert.

        Raises:
            ValueError: for an unknown usage or key type, or an empty validity window.
        """
        if usage not in USAGES:
            raise ValueError(f"unknown usage {usage!r}: choose one of {', '.join(USAGES)}")
        key = generate_key(key_type)
        start, end = _window(not_before, not_after, days)
        extensions = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(signs_certificates=False, rsa=key_type == KeyType.RSA), True),
            (x509.ExtendedKeyUsage(USAGES[usage]), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()), False),
        ]
        if sans:
            extensions.append((_san(sans), False))
        cert = _build(_name(common_name, unit), key.public_key(), issuer=self.cert.subject,
                      signer=self.private_key, start=start, end=end, extensions=extensions)
        return LeafCert(cert, key, chain=self.chain)

    def create_child_ca(self, common_name: str, *, key_type: str = "ec",
                        days: int = DEFAULT_CA_DAYS) -> "CA":
        """Issue an intermediate CA that can sign leaves but no further CAs."""
        return CA(common_name, key_type=key_type, parent=self, days=days, path_length=0)

    def revoke(self, leaf: "LeafCert | int", when: dt.datetime | None = None) -> None:
        """Put a certificate (or a serial number) on this CA's revocation list."""
        serial = leaf if isinstance(leaf, int) else leaf.serial
        self.revoked[serial] = when or utcnow()

    def crl(self, *, days: int = DEFAULT_CRL_DAYS, last_update: dt.datetime | None = None,
            next_update: dt.datetime | None = None) -> x509.CertificateRevocationList:
        """Sign a CRL listing every revoked serial.

        Each call takes the next CRLNumber, whatever the window, so a backdated (stale)
        CRL still gets a higher number than every CRL this CA signed before.

        Args:
            days: how long the CRL is current (nextUpdate - lastUpdate).
            last_update, next_update: explicit window (tests use a past one for a stale CRL).
        """
        last = last_update or (utcnow() - CLOCK_SKEW)
        nxt = next_update or (last + dt.timedelta(days=days))
        self.crl_number += 1
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(last)
            .next_update(nxt)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                critical=False,
            )
            .add_extension(x509.CRLNumber(self.crl_number), critical=False)
        )
        for serial, when in sorted(self.revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        return builder.sign(self.private_key, hashes.SHA256())

    def crl_pem(self, **kwargs) -> Blob:
        """The CRL as PEM (see ``crl`` for arguments)."""
        return Blob(self.crl(**kwargs).public_bytes(serialization.Encoding.PEM))


def self_signed(common_name: str, *, usage: str = "client", key_type: str = "ec",
                days: int = DEFAULT_LEAF_DAYS) -> LeafCert:
    """A self-signed end-entity certificate (issuer == subject, no CA behind it)."""
    if usage not in USAGES:
        raise ValueError(f"unknown usage {usage!r}: choose one of {', '.join(USAGES)}")
    key = generate_key(key_type)
    start, end = _window(None, None, days)
    name = _name(common_name)
    cert = _build(name, key.public_key(), issuer=name, signer=key, start=start, end=end,
                  extensions=[(x509.BasicConstraints(ca=False, path_length=None), True),
                              (x509.ExtendedKeyUsage(USAGES[usage]), False)])
    return LeafCert(cert, key)
