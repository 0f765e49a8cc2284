"""The lab's certificate set on disk: which certificates exist, where, and why.

Layout (all under the certs folder, git-ignored; keys 0600):

    ca.pem, ca.key            lab root CA: the trust anchor every server is given
    intermediate-ca.pem, .key an issuing CA under the root (signs "carol")
    crl.pem                   one CRL per CA in the chain, root's first (lists "revoked")
    rogue-ca.pem, rogue-ca.key  a second CA nobody trusts
    server/server.crt, .key   www.lab.test (SANs www.lab.test, localhost, 127.0.0.1, ...)
    health/health.crt, .key, health.pem   the load balancer's health-check identity
    clients/<name>.crt, .key  one pair per entry of CLIENTS
    manifest.json             what was issued, serials and dates (for status and tests)

``ensure_pki`` is idempotent: it issues only what is missing or no longer shows what
it is meant to show (a "valid" cert near expiry, a "not-yet-valid" one whose start
date has come), and re-signs the CRL before it goes stale, because nginx rejects
every client once its CRL's nextUpdate has passed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import pki
from .errors import CertsMissing, SettingsError

SERVER_NAME = "www.lab.test"
# Names a client or a curl inside the lab may use to reach a server directly.
SERVER_SANS = (SERVER_NAME, "localhost", "127.0.0.1", "nlb", "web1", "web2", "sorry")
RENEW_BEFORE = dt.timedelta(days=7)
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ClientSpec:
    """One client certificate and the lesson it teaches."""

    name: str
    issuer: str  # "lab", "intermediate", "rogue" or "self"
    demonstrates: str
    usage: str = "client"
    window: str = "valid"  # "valid", "expired" or "future"
    revoked: bool = False


CLIENTS = (
    ClientSpec("alice", "lab", "a valid client: accepted"),
    ClientSpec("bob", "lab", "a second valid client: accepted"),
    ClientSpec("carol", "intermediate",
               "issued by the intermediate CA, sends the chain: accepted (ssl_verify_depth 2)"),
    ClientSpec("expired", "lab", "validity ended yesterday: refused (certificate has expired)",
               window="expired"),
    ClientSpec("not-yet-valid", "lab", "validity starts in 30 days: refused (not yet valid)",
               window="future"),
    ClientSpec("revoked", "lab", "listed in crl.pem: refused (certificate revoked)", revoked=True),
    ClientSpec("rogue-ca", "rogue", "issued by an untrusted CA: refused (unknown issuer)"),
    ClientSpec("self-signed", "self", "signed by its own key: refused (self-signed)"),
    ClientSpec("no-client-eku", "lab", "serverAuth EKU only: refused (unsupported purpose)",
               usage="server"),
)
CLIENT_NAMES = tuple(c.name for c in CLIENTS)


@dataclass(frozen=True)
class Layout:
    """Paths of every file in a certs folder."""

    root: Path

    @property
    def ca_cert(self): return self.root / "ca.pem"
    @property
    def ca_key(self): return self.root / "ca.key"
    @property
    def crl(self): return self.root / "crl.pem"
    @property
    def intermediate_cert(self): return self.root / "intermediate-ca.pem"
    @property
    def intermediate_key(self): return self.root / "intermediate-ca.key"
    @property
    def rogue_cert(self): return self.root / "rogue-ca.pem"
    @property
    def rogue_key(self): return self.root / "rogue-ca.key"
    @property
    def server_dir(self): return self.root / "server"
    @property
    def server_cert(self): return self.server_dir / "server.crt"
    @property
    def server_key(self): return self.server_dir / "server.key"
    @property
    def health_dir(self): return self.root / "health"
    @property
    def health_cert(self): return self.health_dir / "health.crt"
    @property
    def health_key(self): return self.health_dir / "health.key"
    @property
    def health_pem(self): return self.health_dir / "health.pem"
    @property
    def clients_dir(self): return self.root / "clients"
    @property
    def manifest(self): return self.root / MANIFEST

    def client_cert(self, name: str) -> Path:
        return self.clients_dir / f"{name}.crt"

    def client_key(self, name: str) -> Path:
        return self.clients_dir / f"{name}.key"

    def required(self) -> list[Path]:
        """Every file the running stack mounts or a client needs."""
        files = [self.ca_cert, self.ca_key, self.intermediate_cert, self.intermediate_key, self.crl, self.server_cert, self.server_key,
                 self.health_cert, self.health_key, self.health_pem]
        for name in CLIENT_NAMES:
            files += [self.client_cert(name), self.client_key(name)]
        return files


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def _key_type_of(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec"
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    return type(key).__name__


def _pair_ok(cert_path: Path, key_path: Path) -> x509.Certificate | None:
    """The certificate if both files load and the key matches it, else None."""
    try:
        cert = load_cert(cert_path)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if cert.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo) != \
            key.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo):
        return None
    return cert


def _still_demonstrates(cert: x509.Certificate, window: str, now: dt.datetime) -> bool:
    if window == "expired":
        return cert.not_valid_after_utc < now
    if window == "future":
        return cert.not_valid_before_utc > now + dt.timedelta(days=1)
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc > now + RENEW_BEFORE


def _window_args(window: str, now: dt.datetime) -> dict:
    if window == "expired":
        return {"not_before": now - dt.timedelta(days=30), "not_after": now - dt.timedelta(days=1)}
    if window == "future":
        return {"not_before": now + dt.timedelta(days=30), "not_after": now + dt.timedelta(days=395)}
    return {}


@dataclass
class PkiReport:
    """What ``ensure_pki`` did."""

    root: Path
    key_type: str
    issued: list
    crl_signed: bool

    @property
    def changed(self) -> bool:
        return bool(self.issued) or self.crl_signed


def ensure_pki(root: Path, *, key_type: str | None = None, force: bool = False,
               now: dt.datetime | None = None) -> PkiReport:
    """Create or top up the lab PKI in ``root``.

    Args:
        root: the certs folder (created if absent).
        key_type: "ec" or "rsa"; None keeps what is there (ec for a new PKI).
        force: renew everything, a new CA included.
        now: the clock (tests move it).

    Returns:
        A PkiReport naming what was (re)issued.

    Raises:
        SettingsError: for an unknown key type, or a key type that differs from the
            existing PKI without ``force``.
    """
    if key_type is not None and key_type not in pki.KEY_TYPES:
        raise SettingsError(f"unknown key type {key_type!r}: choose one of {', '.join(pki.KEY_TYPES)}")
    now = now or pki.utcnow()
    lay = Layout(Path(root))
    lay.root.mkdir(parents=True, exist_ok=True)
    lay.root.chmod(0o700)
    issued: list[str] = []

    if force and key_type is None and (old := _load_ca(lay.ca_cert, lay.ca_key)) is not None:
        key_type = _key_type_of(old.cert)  # --force renews; --key-type is what switches
    ca = None if force else _load_ca(lay.ca_cert, lay.ca_key)
    if ca is not None:
        existing = _key_type_of(ca.cert)
        if key_type and existing != key_type:
            raise SettingsError(
                f"{lay.root} holds {existing} keys, not {key_type}: "
                f"run `lab certs --force --key-type {key_type}` to replace the whole PKI")
        key_type = existing
        if ca.cert.not_valid_after_utc < now + RENEW_BEFORE:
            ca = None
    key_type = key_type or "ec"
    if ca is None:
        # A new root invalidates everything under it: the checks below reissue it all.
        ca = pki.CA("mTLS Lab Root CA", key_type=key_type)
        ca.cert_pem.write_to_path(lay.ca_cert)
        ca.private_key_pem.write_to_path(lay.ca_key)
        issued.append("lab CA")

    inter = None if force else _load_ca(lay.intermediate_cert, lay.intermediate_key, parent=ca)
    if inter is None or not _signed_by(inter.cert, ca) or \
            inter.cert.not_valid_after_utc < now + RENEW_BEFORE:
        inter = ca.create_child_ca("mTLS Lab Issuing CA", key_type=key_type)
        inter.cert_pem.write_to_path(lay.intermediate_cert)
        inter.private_key_pem.write_to_path(lay.intermediate_key)
        issued.append("intermediate CA")

    rogue = None if force else _load_ca(lay.rogue_cert, lay.rogue_key)
    if rogue is None:
        rogue = pki.CA("Rogue CA (untrusted)", key_type=key_type)
        rogue.cert_pem.write_to_path(lay.rogue_cert)
        rogue.private_key_pem.write_to_path(lay.rogue_key)
        issued.append("rogue CA")
    issuers = {"lab": ca, "intermediate": inter, "rogue": rogue, "self": None}

    _keep_revocations(lay.crl, (ca, inter))

    def current(cert_path, key_path, window="valid", issuer=ca):
        if force:
            return False
        cert = _pair_ok(cert_path, key_path)
        if cert is None or not _still_demonstrates(cert, window, now):
            return False
        return _signed_by(cert, issuer) if issuer else cert.issuer == cert.subject

    if not current(lay.server_cert, lay.server_key):
        leaf = ca.issue_cert(SERVER_NAME, sans=SERVER_SANS, usage="server", key_type=key_type)
        leaf.chain_pem.write_to_path(lay.server_cert)
        leaf.private_key_pem.write_to_path(lay.server_key)
        issued.append("server")

    if not current(lay.health_cert, lay.health_key) or not lay.health_pem.exists():
        leaf = ca.issue_cert("lab-health", usage="client", key_type=key_type,
                             unit="load balancer health checks")
        leaf.chain_pem.write_to_path(lay.health_cert)
        leaf.private_key_pem.write_to_path(lay.health_key)
        leaf.private_key_and_cert_chain_pem.write_to_path(lay.health_pem)
        issued.append("health")

    revocations_restored = False
    for spec in CLIENTS:
        issuer = issuers[spec.issuer]
        cert_path, key_path = lay.client_cert(spec.name), lay.client_key(spec.name)
        if current(cert_path, key_path, spec.window, issuer):
            if spec.revoked and (serial := load_cert(cert_path).serial_number) not in issuer.revoked:
                issuer.revoke(serial)  # the CRL was lost or damaged
                revocations_restored = True
            continue
        if issuer is None:
            leaf = pki.self_signed(spec.name, usage=spec.usage, key_type=key_type)
        else:
            leaf = issuer.issue_cert(spec.name, usage=spec.usage, key_type=key_type,
                                     unit="clients", **_window_args(spec.window, now))
        leaf.chain_pem.write_to_path(cert_path)  # leaf, then any intermediate
        leaf.private_key_pem.write_to_path(key_path)
        if spec.revoked:
            issuer.revoke(leaf)
        issued.append(spec.name)

    crl_signed = False
    if issued or revocations_restored or _crls_due(lay.crl, (ca, inter), now):
        pki.write_file(lay.crl, _bundle((ca, inter), now - pki.CLOCK_SKEW))
        crl_signed = True
    if issued or crl_signed or not lay.manifest.exists():
        _write_manifest(lay, key_type)
    return PkiReport(lay.root, key_type, issued, crl_signed)


def _keep_revocations(crl_path: Path, authorities) -> None:
    """Carry over what the current CRLs revoke (when signed by these same CAs)."""
    for crl in load_crls(crl_path):
        for authority in authorities:
            if crl.issuer == authority.cert.subject and crl.is_signature_valid(authority.cert.public_key()):
                for entry in crl:
                    authority.revoke(entry.serial_number, entry.revocation_date_utc)


def _bundle(authorities, last_update: dt.datetime, next_update: dt.datetime | None = None) -> bytes:
    # One file, one CRL per CA in the chain: nginx's ssl_crl needs them all.
    return b"".join(a.crl_pem(last_update=last_update, next_update=next_update).bytes()
                    for a in authorities)


def crl_bundle(root: Path, *, last_update: dt.datetime, next_update: dt.datetime) -> bytes:
    """Sign a CRL bundle for the PKI in ``root`` with the given window, keeping its revocations.

    A window in the past gives the stale CRL that makes nginx refuse every client.

    Raises:
        CertsMissing: when the CAs are not there.
    """
    lay = require_pki(root)
    ca = _load_ca(lay.ca_cert, lay.ca_key)
    inter = _load_ca(lay.intermediate_cert, lay.intermediate_key, parent=ca)
    if ca is None or inter is None:
        raise CertsMissing(f"the CAs in {lay.root} do not load: run `lab certs --force`")
    _keep_revocations(lay.crl, (ca, inter))
    return _bundle((ca, inter), last_update, next_update)


def _signed_by(cert: x509.Certificate, authority: pki.CA) -> bool:
    if cert.issuer != authority.cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(authority.cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _load_ca(cert_path: Path, key_path: Path, parent: pki.CA | None = None) -> pki.CA | None:
    if not (cert_path.exists() and key_path.exists()):
        return None
    try:
        return pki.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes(), parent=parent)
    except ValueError:
        return None


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


def _crls_due(path: Path, authorities, now: dt.datetime) -> bool:
    crls = {crl.issuer: crl for crl in load_crls(path)}
    for authority in authorities:
        crl = crls.get(authority.cert.subject)
        if crl is None or not crl.is_signature_valid(authority.cert.public_key()):
            return True
        if crl.next_update_utc is None or crl.next_update_utc < now + RENEW_BEFORE:
            return True
    return False


def _describe(cert: x509.Certificate) -> dict:
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "X"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


def _write_manifest(lay: Layout, key_type: str) -> None:
    doc = {
        "key_type": key_type,
        "ca": _describe(load_cert(lay.ca_cert)),
        "intermediate_ca": _describe(load_cert(lay.intermediate_cert)),
        "server": _describe(load_cert(lay.server_cert)),
        "crls": [
            {
                "issuer": crl.issuer.rfc4514_string(),
                "last_update": crl.last_update_utc.isoformat(),
                "next_update": crl.next_update_utc.isoformat(),
                "revoked_serials": [format(r.serial_number, "X") for r in crl],
            }
            for crl in load_crls(lay.crl)
        ],
        "clients": {
            spec.name: {**_describe(load_cert(lay.client_cert(spec.name))),
                        "demonstrates": spec.demonstrates}
            for spec in CLIENTS
        },
    }
    pki.write_file(lay.manifest, (json.dumps(doc, indent=2) + "\n").encode())


def require_pki(root: Path) -> Layout:
    """The layout of a complete PKI.

    Raises:
        CertsMissing: naming the first missing file and the command that makes it.
    """
    lay = Layout(Path(root))
    for path in lay.required():
        if not path.exists():
            raise CertsMissing(f"{path} is missing: run `lab certs` (or `make certs`) to generate the lab PKI")
    return lay
