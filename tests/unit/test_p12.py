"""PKCS#12 bundles: they open with the password, hold the right key and chain, and use the
encryption each key store reads (checked with the openssl command, not with our own code)."""

import subprocess

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from lab import certs, p12, pemfile, pki


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    root = tmp_path_factory.mktemp("p12") / "certs"
    certs.ensure_pki(root)
    return root


def _openssl_info(path, password, *extra):
    return subprocess.run(["openssl", "pkcs12", "-info", "-noout", "-in", str(path), "-passin",
                           f"pass:{password}", *extra], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("legacy", [False, True], ids=["modern", "legacy"])
def test_bundles_open_with_their_password_and_hold_key_and_chain(bundled, legacy):
    out = p12.write_bundles(bundled, "s3cret", legacy=legacy)
    lay = certs.Layout(bundled)
    assert {p.name for p in out.files} == {f"{n}.p12" for n in certs.CLIENT_NAMES}
    for path in out.files:
        assert path.stat().st_mode & 0o777 == 0o600
    key, cert, extra = pkcs12.load_key_and_certificates((out.folder / "carol.p12").read_bytes(), b"s3cret")
    assert pki.keys_match(cert, key)
    assert cert == pemfile.load_cert(lay.client_cert("carol"))
    assert [c.subject.rfc4514_string() for c in extra] == ["CN=mTLS Lab Issuing CA,O=mTLS Lab"]
    with pytest.raises(ValueError):  # negative control: the wrong password opens nothing
        pkcs12.load_key_and_certificates((out.folder / "alice.p12").read_bytes(), b"wrong")


def test_modern_bundles_use_aes_and_legacy_ones_3des_for_macos(bundled):
    modern = p12.write_bundles(bundled, "pw", names=("alice",)).files[0]
    info = _openssl_info(modern, "pw")
    assert info.returncode == 0 and "AES-256-CBC" in info.stderr and "MAC: sha256" in info.stderr, info.stderr
    legacy = p12.write_bundles(bundled, "pw", legacy=True, names=("alice",)).files[0]
    info = _openssl_info(legacy, "pw", "-legacy")
    assert info.returncode == 0 and "pbeWithSHA1And3-KeyTripleDES-CBC" in info.stderr and "MAC: sha1" in info.stderr, \
        info.stderr


def test_an_empty_password_is_refused(bundled):
    with pytest.raises(ValueError, match="needs a password"):
        p12.write_bundles(bundled, "")
