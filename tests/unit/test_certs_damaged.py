"""A damaged certs folder ends in a one-line error naming the file and the fix, never a
traceback, and an existing root CA is never replaced behind the user's back."""

import datetime as dt
import pathlib
import shutil

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from lab import certs, pki
from lab.errors import LabError

PEM, PKCS8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def encrypted_key():
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(PEM, PKCS8, serialization.BestAvailableEncryption(b"secret"))


def ed25519_key(key=None):
    key = key or ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(PEM, PKCS8, serialization.NoEncryption())


def ed25519_pair(common_name, *, ca):
    """A self-signed Ed25519 certificate and its key: well formed, but not a key the lab signs with."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(pki.utcnow()).not_valid_after(pki.utcnow() + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, None)
    )
    return cert.public_bytes(PEM), ed25519_key(key)


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


@pytest.fixture
def lab(tmp_path):
    root = tmp_path / "certs"
    certs.ensure_pki(root)
    return certs.Layout(root)


def put(path, data):
    path.write_bytes(data)
    return path


def put_pair(cert_path, key_path, cert_pem, key_pem):
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)


def _key_deleted(lay):
    lay.ca_key.unlink()
    return lay.ca_key


def _ed25519_ca(lay):
    put_pair(lay.ca_cert, lay.ca_key, *ed25519_pair("mTLS Lab Root CA", ca=True))
    return lay.ca_key


def _leaf_as_root(lay):
    put_pair(lay.ca_cert, lay.ca_key, lay.client_cert("alice").read_bytes(),
             lay.client_key("alice").read_bytes())
    return lay.ca_cert


def _intermediate_as_root(lay):
    put_pair(lay.ca_cert, lay.ca_key, lay.intermediate_cert.read_bytes(),
             lay.intermediate_key.read_bytes())
    return lay.ca_cert


# damage -> does it to the root CA, returns the file the error must name
ROOT_DAMAGE = {
    "junk key": lambda lay: put(lay.ca_key, b"junk"),
    "empty cert": lambda lay: put(lay.ca_cert, b""),
    "key deleted": _key_deleted,
    "key of another CA": lambda lay: put(lay.ca_key, pki.CA().private_key_pem.bytes()),
    "encrypted key": lambda lay: put(lay.ca_key, encrypted_key()),
    "ed25519 key": lambda lay: put(lay.ca_key, ed25519_key()),
    "ed25519 CA": _ed25519_ca,
    "a leaf in its place": _leaf_as_root,
    "the intermediate in its place": _intermediate_as_root,
}


@pytest.mark.parametrize("damage", ROOT_DAMAGE)
def test_a_damaged_root_ca_is_never_replaced_silently(lab, damage):
    named = ROOT_DAMAGE[damage](lab)
    before = snapshot(lab.root)
    with pytest.raises(LabError) as err:
        certs.ensure_pki(lab.root)
    message = one_line(err)
    assert str(named) in message and "`lab certs --force`" in message
    assert snapshot(lab.root) == before  # nothing re-issued under a new root


@pytest.mark.parametrize("damage", ROOT_DAMAGE)
def test_force_replaces_a_damaged_root_ca(lab, damage):
    ROOT_DAMAGE[damage](lab)
    report = certs.ensure_pki(lab.root, force=True)
    assert "lab CA" in report.issued and report.key_type == "ec"
    assert not certs.ensure_pki(lab.root).changed


def test_crl_bundle_names_a_damaged_root_ca(lab):
    lab.ca_key.write_bytes(encrypted_key())
    with pytest.raises(LabError) as err:
        certs.crl_bundle(lab.root, last_update=pki.utcnow(), next_update=pki.utcnow())
    assert str(lab.ca_key) in one_line(err)


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_a_directory_in_place_of_the_ca_key(lab, force):
    lab.ca_key.unlink()
    lab.ca_key.mkdir()
    before = snapshot(lab.root)
    with pytest.raises(LabError) as err:
        certs.ensure_pki(lab.root, force=force)
    message = one_line(err)
    assert str(lab.ca_key) in message and "directory" in message and "remove it" in message
    assert snapshot(lab.root) == before


@pytest.mark.parametrize("where", ["clients/alice.key", "clients/alice.crt", "health/health.pem",
                                   "crl.pem", "intermediate-ca.key", "rogue-ca.pem", "manifest.json"])
def test_a_directory_where_a_file_belongs(lab, where):
    path = lab.root / where
    path.unlink()
    path.mkdir()
    with pytest.raises(LabError) as err:
        certs.ensure_pki(lab.root)
    message = one_line(err)
    assert str(path) in message and "directory" in message and "remove it" in message


@pytest.mark.parametrize("where", ["clients", "server"])
def test_a_file_where_a_folder_belongs(lab, where):
    path = lab.root / where
    shutil.rmtree(path)
    path.write_bytes(b"oops")
    with pytest.raises(LabError) as err:
        certs.ensure_pki(lab.root)
    message = one_line(err)
    assert str(path) in message and "remove it" in message


def test_a_file_where_the_certs_folder_belongs(tmp_path):
    root = tmp_path / "certs"
    root.write_bytes(b"oops")
    with pytest.raises(LabError) as err:
        certs.ensure_pki(root)
    assert str(root) in one_line(err)


def unreadable(monkeypatch, target):
    """Reading ``target`` fails as it would for a file owned by someone else (tests may run as root)."""
    real = pathlib.Path.read_bytes

    def read_bytes(self):
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)


def test_an_unreadable_root_ca_key(lab, monkeypatch):
    unreadable(monkeypatch, lab.ca_key)
    with pytest.raises(LabError) as err:
        certs.ensure_pki(lab.root)
    message = one_line(err)
    assert str(lab.ca_key) in message and "Permission denied" in message and "--force" in message


def test_an_unreadable_client_key_is_reissued(lab, monkeypatch):
    unreadable(monkeypatch, lab.client_key("alice"))
    assert certs.ensure_pki(lab.root).issued == ["alice"]


CLIENT_KEY_DAMAGE = {
    "junk": lambda: b"junk",
    "encrypted": encrypted_key,
    "ed25519": ed25519_key,
}


@pytest.mark.parametrize("damage", CLIENT_KEY_DAMAGE)
@pytest.mark.parametrize("name", ["alice", "self-signed"])
def test_a_damaged_client_key_is_reissued(lab, name, damage):
    lab.client_key(name).write_bytes(CLIENT_KEY_DAMAGE[damage]())
    assert certs.ensure_pki(lab.root).issued == [name]
    assert not certs.ensure_pki(lab.root).changed


def test_an_ed25519_self_signed_pair_is_reissued(lab):
    put_pair(lab.client_cert("self-signed"), lab.client_key("self-signed"),
             *ed25519_pair("self-signed", ca=False))
    assert certs.ensure_pki(lab.root).issued == ["self-signed"]


@pytest.mark.parametrize("damage", ["encrypted", "ed25519"])
@pytest.mark.parametrize("which, client", [("intermediate", "carol"), ("rogue", "rogue-ca")])
def test_a_damaged_issuing_ca_key_is_reissued_with_its_client(lab, which, client, damage):
    key_path = lab.intermediate_key if which == "intermediate" else lab.rogue_key
    key_path.write_bytes(CLIENT_KEY_DAMAGE[damage]())
    report = certs.ensure_pki(lab.root)
    assert report.issued == [f"{which} CA", client]
    assert not certs.ensure_pki(lab.root).changed
