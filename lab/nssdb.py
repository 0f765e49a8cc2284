"""A throwaway browser identity: an NSS certificate store, and the policy that picks the certificate.

    home = nssdb.make_home(tmp / "alice", ca=lay.ca_cert, p12=bundle.path, password="mtls-lab")
    with nssdb.auto_select(["https://localhost:8443"], issuer_cn="mTLS Lab Root CA"):
        ... Chromium(home=home) presents alice's certificate to those sites without asking

Chromium on Linux keeps certificates in ``$HOME/.pki/nssdb`` (NSS's sql: format), filled with
certutil and pk12util (Debian's libnss3-tools). It asks the user which certificate to send
unless the AutoSelectCertificateForUrls policy names the site; headless, nobody answers and the
page never loads. Linux Chromium reads policies only from /etc/chromium/policies/managed/ (no
per-profile place): `auto_select` writes one uniquely named file there and removes it.
https://chromeenterprise.google/policies/#AutoSelectCertificateForUrls
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path

from . import proc
from .browser import BrowserError
from .errors import CommandFailed

MANAGED_POLICIES = Path("/etc/chromium/policies/managed")
CA_NICKNAME = "mTLS Lab Root CA"


def _nss(tool: str, *args: str, secret: str = "") -> None:
    if not shutil.which(tool):
        raise BrowserError(f"{tool} not found: install libnss3-tools (apt-get install libnss3-tools)")
    try:
        proc.run([tool, *args], timeout=60)
    except CommandFailed as exc:
        if secret:  # never echo the bundle's password in an error
            exc.argv = [a.replace(secret, "***") for a in exc.argv]
        raise


def make_home(home: Path, *, ca: Path, p12: Path | None = None, password: str = "") -> Path:
    """A HOME whose NSS store trusts ``ca`` for servers and holds the identity in ``p12``.

    Args:
        home: the folder to make (it must not exist yet).
        ca: the lab CA certificate (PEM), trusted to issue server certificates.
        p12: a PKCS#12 bundle (key and certificate) to import; None for a browser without one.
        password: the bundle's password.

    Returns:
        ``home``, for Chromium's HOME.

    Raises:
        BrowserError: when certutil or pk12util is not installed.
        CommandFailed: when NSS refuses a file (its message kept).
    """
    db = Path(home) / ".pki" / "nssdb"
    db.mkdir(parents=True, mode=0o700)
    where = f"sql:{db}"
    _nss("certutil", "-N", "-d", where, "--empty-password")
    # "C,,": a CA trusted to issue server (TLS) certificates, nothing else
    _nss("certutil", "-A", "-d", where, "-n", CA_NICKNAME, "-t", "C,,", "-i", str(ca))
    if p12 is not None:
        _nss("pk12util", "-i", str(p12), "-d", where, "-W", password, secret=password)
    return Path(home)


def auto_select_policy(urls, *, issuer_cn: str, subject_cn: str | None = None) -> dict:
    """The AutoSelectCertificateForUrls policy: for each URL pattern, the certificate to send."""
    wanted = {"ISSUER": {"CN": issuer_cn}}
    if subject_cn:
        wanted["SUBJECT"] = {"CN": subject_cn}
    return {"AutoSelectCertificateForUrls": [json.dumps({"pattern": url, "filter": wanted}) for url in urls]}


@contextlib.contextmanager
def auto_select(urls, *, issuer_cn: str, subject_cn: str | None = None, folder: Path = MANAGED_POLICIES):
    """Install the policy for the duration of the block (one file of its own, removed after).

    Raises:
        BrowserError: when the policy folder cannot be written (it belongs to root).
    """
    path = Path(folder) / f"lab-auto-select-{os.getpid()}-{secrets.token_hex(3)}.json"
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(auto_select_policy(urls, issuer_cn=issuer_cn, subject_cn=subject_cn)))
    except OSError as exc:
        raise BrowserError(f"cannot write Chromium's policy {path} ({exc.strerror}): run as root "
                           f"(Linux Chromium reads policies only from {MANAGED_POLICIES})") from None
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
