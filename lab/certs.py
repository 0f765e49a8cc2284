"""The lab's certificate set on disk: which certificates exist, where, and why.

Layout (all under the certs folder, git-ignored; keys 0600):

    ca.pem, ca.key            lab root CA: the trust anchor every server is given
    intermediate-ca.pem, .key an issuing CA under the root (signs "carol")
    crl.pem                   one CRL per CA in the chain, root's first (lists "revoked")
    rogue-ca.pem, rogue-ca.key  a second CA nobody trusts
    partner-ca.pem, .key, partner-crl.pem  an independent root the ALB trusts on request (LAB_ALB_TRUST_STORE)
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
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import crls, manifest, pemfile, pki, pkicheck
from .errors import CertsMissing, PkiDamaged, SettingsError

SERVER_NAME = "www.lab.test"
# Names a client or a curl inside the lab may use to reach a server directly.
SERVER_SANS = (SERVER_NAME, "localhost", "127.0.0.1", "nlb", "web1", "web2", "sorry")
# The load balancers' health-check identity: accepted for GET /healthz only, everywhere.
HEALTH_CN = "lab-health"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ClientSpec:
    """One client certificate and the lesson it teaches."""

    name: str
    issuer: str  # "lab", "intermediate", "rogue", "partner" or "self"
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
    ClientSpec("rogue-ca", "rogue", "issued by an untrusted CA: refused (unable to verify the first certificate)"),
    # nginx keeps verifying after "self-signed" and reports its last error: no CRL for that issuer.
    ClientSpec("self-signed", "self", "signed by its own key: refused (unable to get certificate CRL)"),
    ClientSpec("no-client-eku", "lab", "serverAuth EKU only: refused (unsuitable certificate purpose)",
               usage="server"),
    ClientSpec("partner", "partner", "issued by the partner CA: accepted by the ALB only with "
               "LAB_ALB_TRUST_STORE=lab+partner; refused elsewhere (unable to verify the first certificate)"),
    ClientSpec("partner-revoked", "partner", "listed in partner-crl.pem: refused (certificate revoked "
               "where the partner CA is trusted)", revoked=True),
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
    def partner_cert(self): return self.root / "partner-ca.pem"
    @property
    def partner_key(self): return self.root / "partner-ca.key"
    @property
    def partner_crl(self): return self.root / "partner-crl.pem"
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
                 self.health_cert, self.health_key, self.health_pem, self.partner_cert, self.partner_key, self.partner_crl]
        for name in CLIENT_NAMES:
            files += [self.client_cert(name), self.client_key(name)]
        return files


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

    Every file it keeps is checked: each pair loads and matches, each certificate is
    signed by the CA it should be, carries its chain, and still shows its lesson.

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
        PkiDamaged: when ca.pem or ca.key exists but cannot be used (without ``force``:
            a new root would invalidate every certificate handed out), or when a
            directory sits where a file belongs, or a file cannot be written.
    """
    if key_type is not None and key_type not in pki.KEY_TYPES:
        raise SettingsError(f"unknown key type {key_type!r}: choose one of {', '.join(pki.KEY_TYPES)}")
    now = now or pki.utcnow()
    lay = Layout(Path(root))
    pkicheck.make_folder(lay.root)
    lay.root.chmod(0o700)
    issued: list[str] = []

    old = pkicheck.root_ca(lay.ca_cert, lay.ca_key, damaged_ok=force)
    pkicheck.check_no_obstacles((lay.server_dir, lay.health_dir, lay.clients_dir),
                                lay.required() + [lay.rogue_cert, lay.rogue_key, lay.manifest])
    if force:
        ca = None
        if key_type is None and old is not None:
            key_type = pkicheck.key_type_of(old.cert)  # --force renews; --key-type is what switches
    else:
        ca = old
    if ca is not None:
        existing = pkicheck.key_type_of(ca.cert)
        if key_type and existing != key_type:
            raise SettingsError(
                f"{lay.root} holds {existing} keys, not {key_type}: "
                f"run `lab certs --force --key-type {key_type}` to replace the whole PKI")
        key_type = existing
        if ca.cert.not_valid_after_utc < now + pkicheck.RENEW_BEFORE:
            ca = None  # documented: a root near its end is renewed, and everything under it
    key_type = key_type or "ec"

    def ensure_ca(label, cert_path, key_path, kept, make) -> pki.CA:
        """``kept`` when it may stay, else a new CA from ``make()``, written to both files."""
        if kept is not None:
            return kept
        authority = make()
        _save(cert_path, authority.cert_pem)
        _save(key_path, authority.private_key_pem)
        issued.append(label)
        return authority

    def kept_ca(cert_path, key_path, parent=None) -> pki.CA | None:
        """The CA in these files if it may stay: current, signed by ``parent`` (None: by itself)."""
        authority = None if force else pkicheck.load_ca_or_none(cert_path, key_path, parent=parent)
        if authority is not None and pkicheck.ca_current(authority, parent, key_type, now):
            return authority
        return None

    # A new root invalidates everything under it: the checks below reissue it all.
    ca = ensure_ca("lab CA", lay.ca_cert, lay.ca_key, ca,
                   lambda: pki.CA("mTLS Lab Root CA", key_type=key_type))
    inter = ensure_ca("intermediate CA", lay.intermediate_cert, lay.intermediate_key,
                      kept_ca(lay.intermediate_cert, lay.intermediate_key, parent=ca),
                      lambda: ca.create_child_ca("mTLS Lab Issuing CA", key_type=key_type))
    rogue = ensure_ca("rogue CA", lay.rogue_cert, lay.rogue_key, kept_ca(lay.rogue_cert, lay.rogue_key),
                      lambda: pki.CA("Rogue CA (untrusted)", key_type=key_type))
    partner = ensure_ca("partner CA", lay.partner_cert, lay.partner_key, kept_ca(lay.partner_cert, lay.partner_key),
                        lambda: pki.CA("Partner Root CA", key_type=key_type))
    issuers = {"lab": ca, "intermediate": inter, "rogue": rogue, "partner": partner, "self": None}
    crl_files = ((lay.crl, (ca, inter)), (lay.partner_crl, (partner,)))  # the backends never see the partner's
    for crl_path, authorities in crl_files:
        crls.keep_revocations(crl_path, authorities)

    def current(cert_path, key_path, window="valid", issuer=ca, name=None, usage="client", revoked=False):
        if force:
            return False
        chain = pkicheck.pair_ok(cert_path, key_path)
        if chain is None:
            return False
        cert = chain[0]
        if pkicheck.key_type_of(cert) != key_type or not pkicheck.still_demonstrates(cert, window, now):
            return False
        if name is not None and not pkicheck.is_for(cert, name, usage):
            return False  # a valid pair, but another certificate's (a server cert copied over)
        if issuer is not None and not revoked and cert.serial_number in issuer.revoked:
            return False  # a lesson that must be accepted, revoked (certs.revoke): issue anew
        if issuer is None:  # self-signed: its own subject, its own signature
            return chain == [cert] and pkicheck.signed_by(cert, None)
        return chain[1:] == issuer.chain and pkicheck.signed_by(cert, issuer)

    if not current(lay.server_cert, lay.server_key, name=SERVER_NAME, usage="server"):
        leaf = ca.issue_cert(SERVER_NAME, sans=SERVER_SANS, usage="server", key_type=key_type)
        _save(lay.server_cert, leaf.chain_pem)
        _save(lay.server_key, leaf.private_key_pem)
        issued.append("server")

    if not current(lay.health_cert, lay.health_key, name=HEALTH_CN) \
            or not pkicheck.crt_bundle_ok(lay.health_pem, lay.health_cert):
        leaf = ca.issue_cert(HEALTH_CN, usage="client", key_type=key_type,
                             unit="load balancer health checks")
        _save(lay.health_cert, leaf.chain_pem)
        _save(lay.health_key, leaf.private_key_pem)
        _save(lay.health_pem, leaf.private_key_and_cert_chain_pem)
        issued.append("health")

    revocations_restored = False
    for spec in CLIENTS:
        issuer = issuers[spec.issuer]
        cert_path, key_path = lay.client_cert(spec.name), lay.client_key(spec.name)
        if current(cert_path, key_path, spec.window, issuer, spec.name, spec.usage, spec.revoked):
            if spec.revoked and (serial := pemfile.load_cert(cert_path).serial_number) not in issuer.revoked:
                issuer.revoke(serial)  # the CRL was lost or damaged
                revocations_restored = True
            continue
        if issuer is None:
            leaf = pki.self_signed(spec.name, usage=spec.usage, key_type=key_type)
        else:
            leaf = issuer.issue_cert(spec.name, usage=spec.usage, key_type=key_type,
                                     unit="clients", **_window_args(spec.window, now))
        _save(cert_path, leaf.chain_pem)  # leaf, then any intermediate
        _save(key_path, leaf.private_key_pem)
        if spec.revoked:
            issuer.revoke(leaf)
        issued.append(spec.name)

    crl_signed = False
    for crl_path, authorities in crl_files:
        if issued or revocations_restored or crls.due(crl_path, authorities, now + pkicheck.RENEW_BEFORE):
            _save(crl_path, pki.Blob(crls.bundle(authorities, now - pki.CLOCK_SKEW)))
            crl_signed = True
    _write_manifest(lay, key_type)
    return PkiReport(lay.root, key_type, issued, crl_signed)


def _save(path: Path, blob: pki.Blob) -> None:
    """Write one PKI file (keys 0600), or say on one line why it cannot be written."""
    try:
        blob.write_to_path(path)
    except OSError as exc:
        raise PkiDamaged(f"cannot write {path} ({exc.strerror or exc}): "
                         f"check that {path.parent} is a folder you can write to") from None


def revoke(root: Path, name: str) -> int:
    """Revoke client ``name`` in the PKI in ``root`` and re-sign crl.pem; return its serial.

    A running lab enforces it after `lab reload`.

    Raises:
        CertsMissing: when the PKI or the client is not there (PkiDamaged when a CA does not load).
    """
    lay = require_pki(root)
    if name not in CLIENT_NAMES:
        raise CertsMissing(f"no client {name!r} in {lay.root}: choose one of {', '.join(CLIENT_NAMES)}")
    cert = pemfile.load_cert(lay.client_cert(name))
    now = pki.utcnow()
    partner = pkicheck.load_ca_or_none(lay.partner_cert, lay.partner_key)
    for crl_path, authorities in ((lay.crl, _authorities(lay)), (lay.partner_crl, (partner,) if partner else ())):
        crls.keep_revocations(crl_path, authorities)
        for authority in authorities:
            if pkicheck.signed_by(cert, authority):
                authority.revoke(cert.serial_number)
                pemfile.write_file(crl_path, crls.bundle(authorities, now - pki.CLOCK_SKEW))
                return cert.serial_number
    raise CertsMissing(f"{name} was not issued by the lab's CAs: nothing to revoke")


def crl_bundle(root: Path, *, last_update: dt.datetime, next_update: dt.datetime) -> bytes:
    """Sign a CRL bundle for the PKI in ``root`` with the given window, keeping its revocations.

    A window in the past gives the stale CRL that makes nginx refuse every client. Its
    CRL numbers still follow those in crl.pem.

    Raises:
        CertsMissing: when the CAs are not there (PkiDamaged when they do not load).
    """
    return crls.bundle(_authorities(require_pki(root)), last_update, next_update)


def _authorities(lay: "Layout") -> tuple:
    """The root and issuing CAs of a complete PKI, with the revocations crl.pem holds."""
    ca = pkicheck.root_ca(lay.ca_cert, lay.ca_key)
    try:
        inter = pkicheck.load_ca(lay.intermediate_cert, lay.intermediate_key, parent=ca)
    except ValueError as exc:
        raise PkiDamaged(f"the intermediate CA cannot be used: {exc}; run `lab certs` to reissue it") from None
    if ca is None or inter is None:
        raise CertsMissing(f"the CAs in {lay.root} are missing: run `lab certs`")
    crls.keep_revocations(lay.crl, (ca, inter))
    return ca, inter


def _write_manifest(lay: Layout, key_type: str) -> None:
    """Write manifest.json unless it already says exactly this (so a damaged one is repaired)."""
    data = manifest.document(lay, key_type, CLIENTS)
    try:
        if pemfile.read(lay.manifest) == data:
            return
    except ValueError:
        pass
    _save(lay.manifest, pki.Blob(data))


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


def print_clients(root: Path, shown=str, console: Console | None = None) -> None:
    """Draw the client certificates in ``root`` and the lesson each teaches (`lab certs`).

    Args:
        root: the certs folder.
        shown: how a path is written (the CLI shows it relative to the working folder).
        console: where to draw (default: stderr).
    """
    table = Table(title="client certificates")
    for col in ("file", "demonstrates"):
        table.add_column(col)
    lay = Layout(root)
    for spec in CLIENTS:
        table.add_row(shown(lay.client_cert(spec.name)), spec.demonstrates)
    (console or Console(stderr=True)).print(table)
