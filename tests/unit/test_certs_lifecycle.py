"""`lab certs` is idempotent, tops up what is missing, renews what stopped teaching its lesson."""

import datetime as dt

import pytest

from cryptography.hazmat.primitives.asymmetric import rsa

from lab import certs, pki


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
    old_ca = certs.load_cert(tmp_path / "ca.pem").serial_number
    report = certs.ensure_pki(tmp_path, force=True)
    assert certs.load_cert(tmp_path / "ca.pem").serial_number != old_ca
    assert set(certs.CLIENT_NAMES) <= set(report.issued)


def test_force_keeps_the_key_type(tmp_path):
    certs.ensure_pki(tmp_path, key_type="rsa")
    report = certs.ensure_pki(tmp_path, force=True)
    assert report.key_type == "rsa"
    assert isinstance(certs.load_cert(tmp_path / "ca.pem").public_key(), rsa.RSAPublicKey)
    # the negative control: --key-type is what switches
    assert certs.ensure_pki(tmp_path, force=True, key_type="ec").key_type == "ec"


@pytest.mark.parametrize("damage", ["delete", "empty", "garbage"])
def test_a_lost_crl_still_revokes_the_revoked_client(tmp_path, damage):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    revoked = certs.load_cert(lay.client_cert("revoked")).serial_number
    alice = certs.load_cert(lay.client_cert("alice")).serial_number
    if damage == "delete":
        lay.crl.unlink()
    else:
        lay.crl.write_bytes(b"" if damage == "empty" else b"-----BEGIN X509 CRL-----\nnope\n")
    report = certs.ensure_pki(tmp_path)
    assert report.crl_signed and not report.issued
    listed = {r.serial_number for crl in certs.load_crls(lay.crl) for r in crl}
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
    serial = certs.load_cert(lay.client_cert("revoked")).serial_number
    assert certs.load_crls(lay.crl)[0].get_revoked_certificate_by_serial_number(serial) is not None


def test_crl_is_resigned_before_it_goes_stale(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    next_update = certs.load_crls(lay.crl)[0].next_update_utc
    later = next_update - dt.timedelta(days=3)  # inside the renewal window
    report = certs.ensure_pki(tmp_path, now=later)
    assert report.crl_signed
    assert certs.load_crls(lay.crl)[0].next_update_utc > next_update
    revoked = certs.load_cert(lay.client_cert("revoked")).serial_number
    assert [r.serial_number for r in certs.load_crls(lay.crl)[0]] == [revoked]


def test_not_yet_valid_is_reissued_when_its_start_comes(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    start = certs.load_cert(lay.client_cert("not-yet-valid")).not_valid_before_utc
    report = certs.ensure_pki(tmp_path, now=start - dt.timedelta(hours=12))
    assert "not-yet-valid" in report.issued


def test_rsa_on_request_and_no_silent_switch(tmp_path):
    report = certs.ensure_pki(tmp_path, key_type="rsa")
    assert report.key_type == "rsa"
    assert certs.load_cert(tmp_path / "clients" / "alice.crt").public_key().key_size == 2048
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


def test_stale_crl_bundle_keeps_revocations(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    now = pki.utcnow()
    stale = certs.crl_bundle(tmp_path, last_update=now - dt.timedelta(days=40),
                             next_update=now - dt.timedelta(days=10))
    (tmp_path / "stale.pem").write_bytes(stale)
    root_crl, inter_crl = certs.load_crls(tmp_path / "stale.pem")
    assert root_crl.next_update_utc < now and inter_crl.next_update_utc < now
    revoked = certs.load_cert(lay.client_cert("revoked")).serial_number
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
