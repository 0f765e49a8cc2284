"""The ALB's mutual-TLS options, end to end, each against its negative control (the default).

AWS's facts: /work/research/alb-mtls.md (docs/aws-parity.md, "ALB mutual-TLS options").
Each test reloads the running ALB (and, for renamed headers, the backends) with one option
changed, then puts the defaults back.
"""

import urllib.parse

import pytest

from lab import certs, compare, pemfile
from lab.settings import Settings
from lab.wait import wait_for

RENAMED = "subject=X-Client-Subject,serial_number=X-Client-Serial,clientcert=X-Client-Chain"


@pytest.fixture(scope="module")
def clients(lab, docker_client):
    return compare.clients_for(lab.stack, docker_client)


@pytest.fixture(scope="module")
def source(lab):
    return lab.settings.client_pool.users[3]


def serving(listener, source, client="alice"):
    """Wait until ``listener`` serves ``client`` (a reloaded ALB re-checks its targets)."""
    return wait_for(lambda: (a := listener.get(client, source)).status == 200 and a, 15,
                    what=f"{listener.design} serving {client}")


def refused_with(answer, alert):
    return (answer.status, answer.alert) == (0, alert)


# -- IgnoreClientCertificateExpiry ---------------------------------------------------------
def test_ignoring_expiry_admits_the_expired_client_and_nothing_else(lab, docker_client, clients, source):
    verify = clients["alb-mtls-verify"]
    # negative control, the default (off): refused in the handshake
    assert refused_with(verify.get("expired", source), "certificate expired")
    with lab.reloaded(("alb",), alb_ignore_client_cert_expiry=True):
        serving(verify, source)
        expired = verify.get("expired", source)
        assert expired.status == 200 and expired.json["client_subject"].startswith("CN=expired,"), expired.body
        # the other checks still apply: only the expiry of the client's own certificate is ignored
        assert refused_with(verify.get("revoked", source), "certificate revoked")
        assert refused_with(verify.get("rogue-ca", source), "unknown ca")
        assert refused_with(verify.get("not-yet-valid", source), "bad certificate")
        assert refused_with(verify.get(None, source), "certificate required")
        # passthrough has no such option (AWS: verify mode only): its backends still refuse it
        chain = clients["alb-mtls-passthrough"].get("expired", source)
        assert (chain.status, chain.client_verify) == (400, "FAILED:certificate has expired")
    serving(verify, source)
    assert refused_with(verify.get("expired", source), "certificate expired")


# -- AdvertiseTrustStoreCaNames -------------------------------------------------------------
def handshake(listener) -> str:
    """What openssl s_client prints of the handshake (no client certificate)."""
    _, out = listener.box.exec(["openssl", "s_client", "-connect", f"{listener.address}:{listener.port}",
                                "-servername", "www.lab.test", "-CAfile", "/certs/ca.pem"])
    return out


def asked(out: str) -> tuple:
    """(a certificate was requested, CA names listed, the lab CA among them)."""
    return ("Requested Signature Algorithms" in out, "Acceptable client certificate CA names" in out,
            "\nO=mTLS Lab, CN=mTLS Lab Root CA\n" in out)


def test_ca_names_are_advertised_only_when_asked(lab, docker_client, clients, source):
    verify = clients["alb-mtls-verify"]
    # the default (off): a certificate is requested, but without the trust store's names...
    out = handshake(verify)
    assert asked(out) == (True, False, False) and "No client certificate CA names sent" in out, out[-1500:]
    # ...and a client that has its certificate sends it anyway
    assert verify.get("alice", source).status == 200
    # passthrough has no trust store to advertise, whatever the setting
    assert asked(handshake(clients["alb-mtls-passthrough"])) == (True, False, False)
    with lab.reloaded(("alb",), alb_advertise_ca_names=True):
        serving(verify, source)
        assert asked(handshake(verify)) == (True, True, True)
        assert asked(handshake(clients["alb-mtls-passthrough"])) == (True, False, False)
    serving(verify, source)
    assert asked(handshake(verify)) == (True, False, False)


# -- routing.http.request.x_amzn_mtls_clientcert_*.header_name -------------------------------
def test_renamed_headers_carry_the_identity_and_the_old_names_are_gone(lab, docker_client, clients, source,
                                                                      certs_dir):
    verify = clients["alb-mtls-verify"]
    renamed = Settings.from_env(env={"LAB_ALB_MTLS_HEADER_NAMES": RENAMED}).alb_mtls_header_names
    alice = pemfile.load_cert(certs.Layout(certs_dir).client_cert("alice"))
    with lab.reloaded(("alb",), alb_mtls_header_names=renamed):
        # negative control: backends still reading AWS's names find nothing under them
        refused = wait_for(lambda: (a := verify.get("alice", source)).status == 400 and a, 15,
                           what="the renamed ALB reaching backends that read the old names")
        assert refused.client_verify == "NONE", refused.body
        with lab.reloaded(("web1", "web2"), alb_mtls_header_names=renamed):
            body = serving(verify, source).json
            assert body["client_subject"] == alice.subject.rfc4514_string()
            assert int(body["client_serial"], 16) == alice.serial_number
            assert body["client_issuer"] == alice.issuer.rfc4514_string()  # not renamed: AWS's name
            # a client's own copy of a renamed header is dropped at the ALB
            forged = {"X-Client-Subject": "CN=admin,O=mTLS Lab", "X-Client-Serial": "01"}
            bob = verify.get("bob", source, headers=forged).json
            assert bob["client_subject"].startswith("CN=bob,") and bob["client_serial"] != "01", bob
            # passthrough: with no certificate the ALB sets no chain header, so only its
            # del-header keeps a forged one (alice's public certificate) from the verifier
            alice_pem = certs.Layout(certs_dir).client_cert("alice").read_text()
            nobody = clients["alb-mtls-passthrough"].get(
                None, source, headers={"X-Client-Chain": urllib.parse.quote(alice_pem)})
            assert (nobody.status, nobody.client_verify) == (400, "NONE"), nobody.body
            carol = clients["alb-mtls-passthrough"].get("carol", source)  # the renamed chain header works
            assert carol.status == 200 and carol.json["client_subject"].startswith("CN=carol,"), carol.body
    serving(verify, source)


# -- a trust store with a second CA bundle entry and its CRL ----------------------------------
def test_the_partner_ca_is_trusted_only_when_in_the_trust_store(lab, docker_client, clients, source):
    verify = clients["alb-mtls-verify"]
    # negative control, the default (the lab CA only): the partner's client is an unknown CA
    assert refused_with(verify.get("partner", source), "unknown ca")
    with lab.reloaded(("alb",), alb_trust_store="lab+partner"):
        partner = serving(verify, source, "partner")
        assert partner.json["client_issuer"] == "CN=Partner Root CA,O=mTLS Lab", partner.body
        # the partner CA's CRL is in the trust store too
        assert refused_with(verify.get("partner-revoked", source), "certificate revoked")
        # the lab's clients as before
        assert verify.get("alice", source).status == 200 and verify.get("carol", source).status == 200
        assert refused_with(verify.get("revoked", source), "certificate revoked")
        assert refused_with(verify.get("rogue-ca", source), "unknown ca")
        # the backends trust the lab CA only: the NLB path and ALB passthrough still refuse
        nlb = clients["nlb"].get("partner", source)
        assert (nlb.status, nlb.client_verify) == (400, "FAILED:unable to verify the first certificate")
        chain = clients["alb-mtls-passthrough"].get("partner", source)
        assert (chain.status, chain.client_verify) == (400, "FAILED:unable to get local issuer certificate")
    serving(verify, source)
    assert refused_with(verify.get("partner", source), "unknown ca")
