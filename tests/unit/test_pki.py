"""The PKI: every certificate is what its name says, checked with cryptography and openssl."""

import datetime as dt
import shutil
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab import certs, crls, pki, pkicheck

NOW = pki.utcnow()


def load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def eku(cert):
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_ca_is_a_proper_ca(layout):
    ca = load(layout.ca_cert)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert bc.critical and bc.value.ca
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)


def test_server_certificate_names_and_usage(layout):
    server = load(layout.server_cert)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "www.lab.test" in sans.get_values_for_type(x509.DNSName)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert eku(server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    server.verify_directly_issued_by(load(layout.ca_cert))


# (client, issued by, clientAuth EKU?, valid now?)
CLIENT_FACTS = [
    pytest.param("alice", "lab", True, True, id="alice"),
    pytest.param("bob", "lab", True, True, id="bob"),
    pytest.param("carol", "intermediate", True, True, id="carol"),
    pytest.param("expired", "lab", True, False, id="expired"),
    pytest.param("not-yet-valid", "lab", True, False, id="not-yet-valid"),
    pytest.param("revoked", "lab", True, True, id="revoked"),
    pytest.param("rogue-ca", "rogue", True, True, id="rogue-ca"),
    pytest.param("self-signed", "self", True, True, id="self-signed"),
    pytest.param("no-client-eku", "lab", False, True, id="no-client-eku"),
]


@pytest.mark.parametrize("name, issuer, client_auth, valid_now", CLIENT_FACTS)
def test_client_certificate_facts(layout, name, issuer, client_auth, valid_now):
    cert = load(layout.client_cert(name))
    expected_issuer = {"lab": layout.ca_cert, "intermediate": layout.intermediate_cert,
                       "rogue": layout.rogue_cert, "self": layout.client_cert(name)}[issuer]
    cert.verify_directly_issued_by(load(expected_issuer))
    assert (ExtendedKeyUsageOID.CLIENT_AUTH in eku(cert)) is client_auth
    assert (cert.not_valid_before_utc <= pki.utcnow() < cert.not_valid_after_utc) is valid_now
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == name


def test_expired_and_future_windows(layout):
    assert load(layout.client_cert("expired")).not_valid_after_utc < NOW
    assert load(layout.client_cert("not-yet-valid")).not_valid_before_utc > NOW + dt.timedelta(days=1)


def test_crl_lists_exactly_the_revoked_serial(layout):
    crl = crls.load_crls(layout.crl)[0]
    revoked = load(layout.client_cert("revoked")).serial_number
    assert [r.serial_number for r in crl] == [revoked]
    assert crl.get_revoked_certificate_by_serial_number(load(layout.client_cert("alice")).serial_number) is None
    assert crl.is_signature_valid(load(layout.ca_cert).public_key())
    assert crl.next_update_utc > NOW + pkicheck.RENEW_BEFORE


def test_crl_bundle_has_one_crl_per_ca_in_the_chain(layout):
    root_crl, inter_crl = crls.load_crls(layout.crl)
    assert root_crl.issuer == load(layout.ca_cert).subject
    assert inter_crl.issuer == load(layout.intermediate_cert).subject
    assert inter_crl.is_signature_valid(load(layout.intermediate_cert).public_key())
    assert list(inter_crl) == []


def test_carol_sends_her_chain(layout):
    pems = layout.client_cert("carol").read_bytes().count(b"BEGIN CERTIFICATE")
    assert pems == 2  # leaf + intermediate: the server trusts only the root
    inter = load(layout.intermediate_cert)
    inter.verify_directly_issued_by(load(layout.ca_cert))
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0


def test_private_keys_are_0600(layout):
    keys = [layout.ca_key, layout.intermediate_key, layout.rogue_key, layout.server_key, layout.health_key, layout.health_pem]
    keys += [layout.client_key(n) for n in certs.CLIENT_NAMES]
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(layout.ca_cert.stat().st_mode) == 0o644


OPENSSL_VERDICTS = [
    pytest.param("alice", "OK", id="alice"),
    pytest.param("carol", "OK", id="carol"),
    pytest.param("expired", "certificate has expired", id="expired"),
    pytest.param("not-yet-valid", "certificate is not yet valid", id="not-yet-valid"),
    pytest.param("revoked", "certificate revoked", id="revoked"),
    pytest.param("rogue-ca", "unable to get local issuer certificate", id="rogue-ca"),
    pytest.param("self-signed", "self-signed certificate", id="self-signed"),
    pytest.param("no-client-eku", "unsuitable certificate purpose", id="no-client-eku"),
]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
@pytest.mark.parametrize("name, verdict", OPENSSL_VERDICTS)
def test_openssl_verify_agrees(layout, name, verdict):
    """A second opinion from a tool we did not write: openssl verify as a TLS server would."""
    # As a server does: the chain the client sends is untrusted, only ca.pem is trusted.
    proc = subprocess.run(
        ["openssl", "verify", "-CAfile", str(layout.ca_cert), "-untrusted", str(layout.client_cert(name)),
         "-crl_check_all", "-CRLfile", str(layout.crl), "-purpose", "sslclient", str(layout.client_cert(name))],
        capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    if verdict == "OK":
        assert proc.returncode == 0 and output.strip().endswith(": OK"), output
    else:
        assert proc.returncode != 0 and verdict in output.replace("self signed", "self-signed"), output


def test_health_pem_is_chain_then_key(layout):
    data = layout.health_pem.read_bytes()
    assert data.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY-----" in data and data.index(b"PRIVATE KEY") > data.index(b"END CERTIFICATE")


def test_intermediate_chain_verifies():
    root = pki.CA()
    inter = root.create_child_ca("mTLS Lab Issuing CA")
    leaf = inter.issue_cert("carol")
    assert len(leaf.cert_chain_pems) == 2
    leaf.cert.verify_directly_issued_by(inter.cert)
    inter.cert.verify_directly_issued_by(root.cert)
    assert inter.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="unknown key type 'dsa'"):
        pki.generate_key("dsa")
    with pytest.raises(ValueError, match="unknown usage 'email'"):
        pki.CA().issue_cert("x", usage="email")
    with pytest.raises(ValueError, match="must be later than"):
        pki.CA().issue_cert("x", not_before=NOW, not_after=NOW - dt.timedelta(days=1))


def test_every_certificate_has_a_subject_key_identifier(layout):
    ca = pki.CA()
    issued = [ca.cert, ca.issue_cert("x").cert, ca.create_child_ca("i").issue_cert("y").cert,
              pki.self_signed("z").cert]
    issued += [load(layout.client_cert(n)) for n in certs.CLIENT_NAMES]
    issued += [load(layout.server_cert), load(layout.health_cert)]
    for cert in issued:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key()), cert.subject


def crl_number(crl):
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_crl_numbers_increase_within_a_second_and_for_a_backdated_crl():
    ca = pki.CA()
    numbers = [crl_number(ca.crl()) for _ in range(3)]
    numbers.append(crl_number(ca.crl(last_update=NOW - dt.timedelta(days=40),
                                     next_update=NOW - dt.timedelta(days=10))))
    assert numbers == sorted(set(numbers))


def test_self_signed_lesson_says_what_nginx_reports():
    spec = {c.name: c for c in certs.CLIENTS}["self-signed"]
    assert "unable to get certificate CRL" in spec.demonstrates


def ed25519_cert(key):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, None))


def test_keys_match_compares_the_subject_public_key_info():
    ca, other = pki.CA(), pki.CA(key_type="rsa")
    ed = ed25519.Ed25519PrivateKey.generate()
    assert pki.keys_match(ca.cert, ca.private_key)
    assert pki.keys_match(ca.cert.public_key(), ca.private_key)
    assert pki.keys_match(other.cert, other.private_key)
    assert not pki.keys_match(ca.cert, other.private_key)
    assert not pki.keys_match(ca.cert, ed)
    assert pki.keys_match(ed25519_cert(ed), ed)
    assert not pki.keys_match(ed25519_cert(ed), ca.private_key)


def _pem(key, encryption=None):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption or serialization.NoEncryption())


def test_from_pem_refuses_what_it_cannot_sign_with():
    ca = pki.CA()
    ed = ed25519.Ed25519PrivateKey.generate()
    cert_pem = ca.cert_pem.bytes()
    bad_keys = [
        (_pem(ed), "Ed25519"),
        (_pem(ca.private_key, serialization.BestAvailableEncryption(b"pw")), "encrypted"),
        (pki.CA().private_key_pem.bytes(), "does not match"),
        (b"junk", "PEM private key"),
    ]
    for key_pem, reason in bad_keys:
        with pytest.raises(ValueError, match=reason):
            pki.CA.from_pem(cert_pem, key_pem)
    with pytest.raises(ValueError, match="Ed25519"):
        pki.CA.from_pem(ed25519_cert(ed).public_bytes(serialization.Encoding.PEM), _pem(ed))
    leaf = ca.issue_cert("x")
    with pytest.raises(ValueError, match="not a CA"):
        pki.CA.from_pem(leaf.cert_pem.bytes(), leaf.private_key_pem.bytes())
    assert pki.CA.from_pem(cert_pem, ca.private_key_pem.bytes()).cert == ca.cert
