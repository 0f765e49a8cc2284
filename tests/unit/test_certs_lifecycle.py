"""`lab certs` is idempotent, tops up what is missing, renews what stopped teaching its lesson."""

import datetime as dt
import json
import os
import shutil
import stat

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lab import certs, crls, pemfile, pki


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_second_run_changes_nothing(tmp_path):
    first = certs.ensure_pki(tmp_path)
    assert "lab CA" in first.issued and first.crl_signed
    before = snapshot(tmp_path)
    again = certs.ensure_pki(tmp_path)
    assert not again.changed
    assert snapshot(tmp_path) == before


def test_force_renews_the_ca(tmp_path):
    certs.ensure_pki(tmp_path)
    old_ca = pemfile.load_cert(tmp_path / "ca.pem").serial_number
    report = certs.ensure_pki(tmp_path, force=True)
    assert pemfile.load_cert(tmp_path / "ca.pem").serial_number != old_ca
    assert set(certs.CLIENT_NAMES) <= set(report.issued)


def test_force_keeps_the_key_type(tmp_path):
    certs.ensure_pki(tmp_path, key_type="rsa")
    report = certs.ensure_pki(tmp_path, force=True)
    assert report.key_type == "rsa"
    assert isinstance(pemfile.load_cert(tmp_path / "ca.pem").public_key(), rsa.RSAPublicKey)
    # the negative control: --key-type is what switches
    assert certs.ensure_pki(tmp_path, force=True, key_type="ec").key_type == "ec"


@pytest.mark.parametrize("damage", ["delete", "empty", "garbage"])
def test_a_lost_crl_still_revokes_the_revoked_client(tmp_path, damage):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    revoked = pemfile.load_cert(lay.client_cert("revoked")).serial_number
    alice = pemfile.load_cert(lay.client_cert("alice")).serial_number
    if damage == "delete":
        lay.crl.unlink()
    else:
        lay.crl.write_bytes(b"" if damage == "empty" else b"-----BEGIN X509 CRL-----\nnope\n")
    report = certs.ensure_pki(tmp_path)
    assert report.crl_signed and not report.issued
    listed = {r.serial_number for crl in crls.load_crls(lay.crl) for r in crl}
    assert revoked in listed and alice not in listed


def test_missing_client_is_reissued_alone(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    alice_before = lay.client_cert("alice").read_bytes()
    lay.client_key("bob").unlink()
    report = certs.ensure_pki(tmp_path)
    assert report.issued == ["bob"]
    assert lay.client_cert("alice").read_bytes() == alice_before


def test_reissued_revoked_cert_is_still_revoked(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    lay.client_cert("revoked").unlink()
    certs.ensure_pki(tmp_path)
    serial = pemfile.load_cert(lay.client_cert("revoked")).serial_number
    assert crls.load_crls(lay.crl)[0].get_revoked_certificate_by_serial_number(serial) is not None


def test_crl_is_resigned_before_it_goes_stale(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    next_update = crls.load_crls(lay.crl)[0].next_update_utc
    later = next_update - dt.timedelta(days=3)  # inside the renewal window
    report = certs.ensure_pki(tmp_path, now=later)
    assert report.crl_signed
    assert crls.load_crls(lay.crl)[0].next_update_utc > next_update
    revoked = pemfile.load_cert(lay.client_cert("revoked")).serial_number
    assert [r.serial_number for r in crls.load_crls(lay.crl)[0]] == [revoked]


def test_not_yet_valid_is_reissued_when_its_start_comes(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    start = pemfile.load_cert(lay.client_cert("not-yet-valid")).not_valid_before_utc
    report = certs.ensure_pki(tmp_path, now=start - dt.timedelta(hours=12))
    assert "not-yet-valid" in report.issued


def test_rsa_on_request_and_no_silent_switch(tmp_path):
    report = certs.ensure_pki(tmp_path, key_type="rsa")
    assert report.key_type == "rsa"
    assert pemfile.load_cert(tmp_path / "clients" / "alice.crt").public_key().key_size == 2048
    with pytest.raises(ValueError, match="holds rsa keys, not ec.*--force --key-type ec"):
        certs.ensure_pki(tmp_path, key_type="ec")


def test_unknown_key_type(tmp_path):
    with pytest.raises(ValueError, match="unknown key type 'ed448'"):
        certs.ensure_pki(tmp_path, key_type="ed448")


def test_require_pki_names_the_fix(tmp_path):
    with pytest.raises(certs.CertsMissing, match=r"ca.pem is missing: run `lab certs`"):
        certs.require_pki(tmp_path)


def test_write_file_never_exposes_a_key(tmp_path):
    target = tmp_path / "k.key"
    pki.Blob(b"secret", private=True).write_to_path(target)
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]  # no temp file left behind


def test_write_file_syncs_the_data_then_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(pemfile.os, "fsync", fsync)
    monkeypatch.setattr(pemfile.os, "replace", replace)
    pemfile.write_file(tmp_path / "k.key", b"secret", private=True)
    assert events == ["fsync file", "replace", "fsync dir"]
    assert (tmp_path / "k.key").read_bytes() == b"secret"


def spki(key):
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("damage", ["junk", "chain only", "key only", "wrong key", "another client"])
def test_a_damaged_health_pem_is_reissued(tmp_path, damage):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    crt, key = lay.health_cert.read_bytes(), lay.health_key.read_bytes()
    alice_crt, alice_key = lay.client_cert("alice").read_bytes(), lay.client_key("alice").read_bytes()
    lay.health_pem.write_bytes({"junk": b"junk", "chain only": crt, "key only": key,
                                "wrong key": crt + alice_key,
                                "another client": alice_crt + alice_key}[damage])
    assert certs.ensure_pki(tmp_path).issued == ["health"]
    data = lay.health_pem.read_bytes()
    chain = x509.load_pem_x509_certificates(data)
    assert chain == x509.load_pem_x509_certificates(lay.health_cert.read_bytes())
    assert spki(serialization.load_pem_private_key(data, None).public_key()) == spki(chain[0].public_key())
    assert not certs.ensure_pki(tmp_path).changed


def test_a_leaf_in_place_of_the_intermediate_is_replaced(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    # alice is signed by the root and her key matches: only "is it a CA?" tells her apart
    shutil.copy(lay.client_cert("alice"), lay.intermediate_cert)
    shutil.copy(lay.client_key("alice"), lay.intermediate_key)
    report = certs.ensure_pki(tmp_path)
    assert report.issued == ["intermediate CA", "carol"]
    inter = pemfile.load_cert(lay.intermediate_cert)
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_rogue_ca_that_is_not_self_signed_is_replaced(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    shutil.copy(lay.intermediate_cert, lay.rogue_cert)
    shutil.copy(lay.intermediate_key, lay.rogue_key)
    report = certs.ensure_pki(tmp_path)
    assert report.issued == ["rogue CA", "rogue-ca"]
    rogue = pemfile.load_cert(lay.rogue_cert)
    rogue.verify_directly_issued_by(rogue)


def test_carol_without_her_chain_is_reissued(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    leaf_only = pemfile.load_cert(lay.client_cert("carol")).public_bytes(serialization.Encoding.PEM)
    lay.client_cert("carol").write_bytes(leaf_only)
    assert certs.ensure_pki(tmp_path).issued == ["carol"]
    assert lay.client_cert("carol").read_bytes().count(b"BEGIN CERTIFICATE") == 2


def test_a_damaged_manifest_is_rewritten(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    good = lay.manifest.read_bytes()
    lay.manifest.write_bytes(b"{not json")
    assert not certs.ensure_pki(tmp_path).issued
    assert lay.manifest.read_bytes() == good and json.loads(good)["key_type"] == "ec"


def test_a_root_ca_near_expiry_is_still_renewed(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    old = pemfile.load_cert(lay.ca_cert)
    report = certs.ensure_pki(tmp_path, now=old.not_valid_after_utc - dt.timedelta(days=3))
    assert "lab CA" in report.issued  # documented: no error, a new root and all under it
    assert pemfile.load_cert(lay.ca_cert).serial_number != old.serial_number


def crl_numbers(path):
    return {crl.issuer.rfc4514_string(): crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            for crl in crls.load_crls(path)}


def test_crl_numbers_only_go_up(tmp_path):
    root = tmp_path / "certs"
    certs.ensure_pki(root)
    lay = certs.Layout(root)
    seen = [crl_numbers(lay.crl)]
    for _ in range(2):
        due = crls.load_crls(lay.crl)[0].next_update_utc - dt.timedelta(days=3)
        assert certs.ensure_pki(root, now=due).crl_signed
        seen.append(crl_numbers(lay.crl))
    now = pki.utcnow()
    stale = certs.crl_bundle(root, last_update=now - dt.timedelta(days=40),
                             next_update=now - dt.timedelta(days=10))
    (tmp_path / "stale.pem").write_bytes(stale)
    seen.append(crl_numbers(tmp_path / "stale.pem"))
    assert len(seen[0]) == 2
    for issuer in seen[0]:
        numbers = [s[issuer] for s in seen]
        assert numbers == sorted(set(numbers)), (issuer, numbers)


def test_stale_crl_bundle_keeps_revocations(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    now = pki.utcnow()
    stale = certs.crl_bundle(tmp_path, last_update=now - dt.timedelta(days=40),
                             next_update=now - dt.timedelta(days=10))
    (tmp_path / "stale.pem").write_bytes(stale)
    root_crl, inter_crl = crls.load_crls(tmp_path / "stale.pem")
    assert root_crl.next_update_utc < now and inter_crl.next_update_utc < now
    revoked = pemfile.load_cert(lay.client_cert("revoked")).serial_number
    assert [r.serial_number for r in root_crl] == [revoked]


def test_status_warns_before_anything_that_must_stay_valid_expires(tmp_path):
    from lab import status

    certs.ensure_pki(tmp_path)
    rows = {r["name"]: r for r in status.certificates(tmp_path)}
    assert all(r["state"] == "ok" for r in rows.values())
    assert set(rows) >= {"lab CA", "server www.lab.test", "client alice", "CRL of mTLS Lab Root CA (nextUpdate)"}
    later = pki.utcnow() + dt.timedelta(days=25)  # the CRLs' nextUpdate is 30 days out
    rows = {r["name"]: r for r in status.certificates(tmp_path, now=later)}
    assert rows["CRL of mTLS Lab Root CA (nextUpdate)"]["state"] == "expires soon"
    assert rows["client alice"]["state"] == "ok"
    much_later = pki.utcnow() + dt.timedelta(days=400)
    assert {r["name"]: r["state"] for r in status.certificates(tmp_path, now=much_later)}["client alice"] == "expired"


def test_revoke_puts_a_client_on_its_issuers_crl_and_keeps_the_others(tmp_path):
    root = tmp_path / "certs"
    certs.ensure_pki(root)
    lay = certs.Layout(root)

    def revoked():
        return {crl.issuer.rfc4514_string().split(",")[0]: {e.serial_number for e in crl}
                for crl in crls.load_crls(lay.crl)}

    before = revoked()
    bob = pemfile.load_cert(lay.client_cert("bob")).serial_number
    carol = pemfile.load_cert(lay.client_cert("carol")).serial_number
    assert bob not in before["CN=mTLS Lab Root CA"]
    assert certs.revoke(root, "bob") == bob
    assert certs.revoke(root, "carol") == carol
    after = revoked()
    assert after["CN=mTLS Lab Root CA"] == before["CN=mTLS Lab Root CA"] | {bob}  # "revoked" stays
    assert carol in after["CN=mTLS Lab Issuing CA"]


def test_a_valid_pair_of_the_wrong_certificate_is_replaced(tmp_path):
    """server.crt/.key replaced by alice's (valid, signed by the CA) is not 'current'."""
    root = tmp_path / "certs"
    certs.ensure_pki(root)
    lay = certs.Layout(root)
    shutil.copy(lay.client_cert("alice"), lay.server_cert)
    shutil.copy(lay.client_key("alice"), lay.server_key)
    report = certs.ensure_pki(root)
    assert "server" in report.issued
    assert pemfile.load_cert(lay.server_cert).subject.rfc4514_string().startswith("CN=www.lab.test")


def test_a_revoked_valid_client_is_issued_anew_and_unknown_names_are_refused(tmp_path):
    root = tmp_path / "certs"
    certs.ensure_pki(root)
    lay = certs.Layout(root)
    old = certs.revoke(root, "bob")
    report = certs.ensure_pki(root)  # bob must teach "accepted" again: a new serial
    assert "bob" in report.issued
    assert pemfile.load_cert(lay.client_cert("bob")).serial_number != old
    with pytest.raises(certs.CertsMissing, match="no client 'mallory'"):
        certs.revoke(root, "mallory")
