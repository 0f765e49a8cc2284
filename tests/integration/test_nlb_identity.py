"""The NLB TLS listener's 2026 mutual TLS beyond "verify against the CA": AWS's client
certificate identity filters, in AWS's order (chain, then filters, then revocation), and the
lab's labelled option of naming the client to the targets in PROXY v2.

AWS's facts: /work/research/nlb.md section 1 (docs/aws-parity.md, "NLB TLS listener: identity
filters"). Each test reloads the running nlb-tls load balancer (and, for the PROXY v2 option,
the backends) with one setting changed, checks the default first as its negative control,
and puts the defaults back.
"""

import datetime as dt
import pytest

from lab import connlog, identity_filters, pemfile, pki
from lab.certs import Layout
from lab.client import Host, Listener, request
from lab.credentials import Credentials
from lab.designs import DESIGNS
from lab.wait import wait_for

DESIGN = "nlb-tls-mtls"
CLOSED_AFTER_HANDSHAKE = 52  # curl: "Empty reply from server": the handshake passed, then the NLB closed


@pytest.fixture(scope="module")
def nlb_tls(lab, from_client):
    if DESIGN not in lab.settings.designs:
        pytest.skip(f"{DESIGN} is not running")
    return Listener(from_client, DESIGN, lab.settings.lb_ips("nlb-tls")[0], DESIGNS[DESIGN].container_port)


@pytest.fixture(scope="module")
def source(lab):
    return lab.settings.client_pool.users[4]


def filters(raw: str) -> dict:
    return {"nlb_tls_identity_filters": identity_filters.parse(raw)}


def serving(listener, source, client="alice"):
    """Wait until ``listener`` serves ``client`` (a reloaded load balancer re-checks its targets)."""
    return wait_for(lambda: (a := listener.get(client, source)).status == 200 and a, 15,
                    what=f"{listener.design} serving {client}")


def status_of(lab, serial: str, before: int) -> str:
    """tls_verify_status of the connection-log line, written after ``before`` lines, of the
    certificate with ``serial`` (hex)."""
    def line():
        for record in connlog.read(lab.settings.build_dir, DESIGN)[before:]:
            # as numbers: HAProxy prints whole bytes ("0F..."), Python drops the leading zero
            logged = record["leaf_client_cert_serial_number"]
            if logged != "-" and int(logged, 16) == int(serial, 16):
                return record["tls_verify_status"]
        return None
    return wait_for(line, 5, what=f"a connection-log line for serial {serial}")


def serial(lab, client: str) -> str:
    return f"{pemfile.load_cert(Layout(lab.certs_dir).client_cert(client)).serial_number:X}"


def attempt(lab, listener, client, source):
    """(answer, tls_verify_status) of one request by a lab client."""
    before = len(connlog.read(lab.settings.build_dir, DESIGN))
    answer = listener.get(client, source)
    return answer, status_of(lab, serial(lab, client), before)


def refused_after_handshake(answer) -> bool:
    return answer.status == 0 and answer.curl_exit == CLOSED_AFTER_HANDSHAKE and not answer.alert


# -- a CN filter: alice in, bob out --------------------------------------------------------
def test_cn_filter_admits_alice_and_refuses_bob(lab, docker_client, nlb_tls, source):
    # negative control, the default (no filters): every certificate the trust store accepts
    assert nlb_tls.get("bob", source).status == 200
    with lab.reloaded(("nlb-tls",), **filters("subject-cn=alice")):
        serving(nlb_tls, source)
        alice, alice_status = attempt(lab, nlb_tls, "alice", source)
        assert alice.status == 200 and alice_status == "Success", alice
        bob, bob_status = attempt(lab, nlb_tls, "bob", source)
        assert refused_after_handshake(bob), bob
        assert bob_status == f"Failed:{identity_filters.REJECTED}"
        # carol is trusted too (the intermediate CA), but no filter names her
        carol, _ = attempt(lab, nlb_tls, "carol", source)
        assert refused_after_handshake(carol), carol
    serving(nlb_tls, source, "bob")


def test_filters_ignore_case_and_match_by_prefix_and_ou(lab, docker_client, nlb_tls, source):
    with lab.reloaded(("nlb-tls",), **filters("subject-cn=ALICE,subject-ou:prefix=CLI")):
        serving(nlb_tls, source)
        # bob's OU is "clients": the OU prefix admits him, whatever the case
        assert nlb_tls.get("bob", source).status == 200
    with lab.reloaded(("nlb-tls",), **filters("subject-cn:prefix=ali,subject-ou=client")):
        serving(nlb_tls, source)
        # "client" is not bob's OU exactly, and "ali" is no prefix of "bob"
        assert refused_after_handshake(nlb_tls.get("bob", source))


# -- AWS's order: chain, filters, revocation ----------------------------------------------
def test_a_certificate_failing_two_checks_is_refused_for_the_one_aws_checks_first(
        lab, docker_client, nlb_tls, source):
    # negative control, no filters: revoked is refused for revocation, in the handshake
    revoked, status = attempt(lab, nlb_tls, "revoked", source)
    assert (revoked.status, revoked.alert, status) == (0, "certificate revoked", "Failed:ClientCertCrlHit")
    with lab.reloaded(("nlb-tls",), **filters("subject-cn=alice")):
        serving(nlb_tls, source)
        # revoked fails the filter and revocation: the filter comes first
        revoked, status = attempt(lab, nlb_tls, "revoked", source)
        assert refused_after_handshake(revoked) and status == f"Failed:{identity_filters.REJECTED}", revoked
        # rogue-ca fails the chain and the filter: the chain comes first (in the handshake)
        rogue, status = attempt(lab, nlb_tls, "rogue-ca", source)
        assert (rogue.alert, status) == ("unknown ca", "Failed:ClientCertUntrusted"), rogue
        expired, status = attempt(lab, nlb_tls, "expired", source)
        assert (expired.alert, status) == ("certificate expired", "Failed:ClientCertExpired"), expired
    with lab.reloaded(("nlb-tls",), **filters("subject-cn=alice,subject-cn=revoked")):
        serving(nlb_tls, source)
        # a filter admits revoked: now revocation turns it away, after the filters
        revoked, status = attempt(lab, nlb_tls, "revoked", source)
        assert refused_after_handshake(revoked) and status == "Failed:ClientCertCrlHit", revoked
        assert nlb_tls.get("alice", source).status == 200


# -- SAN filters: certificates issued here by the lab CA, with subjectAltNames ----------------
@pytest.fixture(scope="module")
def san_clients(lab, tmp_path_factory):
    """name -> Credentials of certificates the lab CA issues for this test, with SANs (the
    lab's own clients have none)."""
    lay = Layout(lab.certs_dir)
    ca = pki.CA.from_pem(lay.ca_cert.read_bytes(), lay.ca_key.read_bytes())
    folder = tmp_path_factory.mktemp("san-clients")
    specs = {"svc-a": ["svc-a.clients.lab.test", "URI:spiffe://lab.test/ns/prod/sa/a"],
             "svc-b": ["svc-b.clients.lab.test", "URI:spiffe://lab.test/ns/prod/sa/B"]}
    made = {}
    for name, sans in specs.items():
        leaf = ca.issue_cert(name, unit="services", sans=sans,
                             not_before=pki.utcnow() - dt.timedelta(minutes=5))
        leaf.cert_pem.write_to_path(folder / f"{name}.crt")
        leaf.private_key_pem.write_to_path(folder / f"{name}.key")
        (folder / f"{name}.key").chmod(0o600)
        made[name] = Credentials(lab.certs_dir, None, cert=folder / f"{name}.crt", key=folder / f"{name}.key")
    return made


def san_get(lab, creds):
    return request(Host(lab.certs_dir), creds, port=DESIGNS[DESIGN].container_port,
                   address=lab.settings.lb_ips("nlb-tls")[0])


def test_san_dns_and_uri_filters(lab, docker_client, nlb_tls, source, san_clients):
    a, b = san_clients["svc-a"], san_clients["svc-b"]
    # negative control, no filters: both service certificates pass the trust store
    assert [san_get(lab, a).status, san_get(lab, b).status] == [200, 200]
    with lab.reloaded(("nlb-tls",), **filters("san-dns=SVC-A.clients.lab.test")):
        wait_for(lambda: san_get(lab, a).status == 200 and not nlb_tls.get("alice", source).status,
                 15, what="the san-dns filter applied")
        assert san_get(lab, a).status == 200       # DNS names: case ignored
        assert san_get(lab, b).status == 0
        assert refused_after_handshake(nlb_tls.get("alice", source))   # no SAN at all: no match
    # URIs: scheme and host without case, the path with case (alice: the reload is done)
    with lab.reloaded(("nlb-tls",), **filters("subject-cn=alice,san-uri:prefix=SPIFFE://LAB.TEST/ns/prod/sa/b")):
        serving(nlb_tls, source)
        assert san_get(lab, a).status == 0        # ".../sa/a"
        assert san_get(lab, b).status == 0        # ".../sa/B": not "b"
    with lab.reloaded(("nlb-tls",), **filters("subject-cn=alice,san-uri=Spiffe://Lab.Test/ns/prod/sa/B")):
        serving(nlb_tls, source)
        assert san_get(lab, b).status == 200
        assert san_get(lab, a).status == 0


# -- the lab's option: the client's CN to the targets in PROXY v2 ----------------------------
def test_proxy_v2_identity_is_a_labelled_lab_option(lab, docker_client, nlb_tls, source):
    # the default, as AWS: the targets learn the client's address, not who it is
    alice = nlb_tls.get("alice", source)
    assert alice.json["client_subject"] == "" and "not forwarded" in alice.json["identity_source"], alice.json
    assert alice.json["client_ip"] == source
    with lab.reloaded(("nlb-tls", "web1", "web2"), nlb_tls_proxy_identity="cn"):
        answers = {c: serving(nlb_tls, source, c) for c in ("alice", "bob")}
        for client, answer in answers.items():
            assert answer.json["client_subject"] == f"CN={client}", answer.json
            assert answer.json["identity_source"].startswith("PROXY v2 TLV"), answer.json
            assert "AWS sends none" in answer.json["identity_source"]
            assert answer.json["client_ip"] == source
    back = serving(nlb_tls, source)
    assert back.json["client_subject"] == "", back.json
