"""CloudFront with viewer mutual TLS and AWS WAF (the seed's claim C5, answered in 2025):
the edge checks the client certificate in the TLS handshake, the WAF reads the decrypted
request, and the origin learns the client from CloudFront-Viewer-Cert-* headers, which it
believes from CloudFront's address only. Each check has its negative control."""

import json
import re
import urllib.parse

import pytest

from lab import certs, compare, pemfile
from lab.client import request
from lab.designs import DESIGNS

SQLI = f"/whoami?{compare.SQLI}"
REQUIRED, OPTIONAL = "cloudfront-mtls", "cloudfront-mtls-optional"


@pytest.fixture(scope="module")
def edge(lab, docker_client):
    found = compare.clients_for(lab.stack, docker_client)
    assert {REQUIRED, OPTIONAL} <= set(found), "the test stack runs the CloudFront designs"
    return found


@pytest.fixture(scope="module")
def source(lab):
    return lab.settings.client_pool.users[-1]


# (design, client, expected): "ok", "alert:<TLS alert from the edge>" or "400:<client_verify
# at the origin>"
MATRIX = [
    (REQUIRED, "alice", "ok"),
    (REQUIRED, "carol", "ok"),  # a chain through the intermediate CA
    (REQUIRED, "rogue-ca", "alert:unknown ca"),
    (REQUIRED, "revoked", "alert:certificate revoked"),
    (REQUIRED, "expired", "alert:certificate expired"),
    (REQUIRED, None, "alert:certificate required"),
    (OPTIONAL, "alice", "ok"),
    (OPTIONAL, "rogue-ca", "alert:unknown ca"),  # optional still refuses an invalid certificate
    (OPTIONAL, "revoked", "alert:certificate revoked"),
    (OPTIONAL, None, "400:NONE"),  # no certificate: through the edge, refused by the origin
]


def check(answer, expected):
    if expected == "ok":
        assert answer.status == 200 and answer.json["client_verify"] == "SUCCESS", answer.body
        assert answer.json["listener"] == "cloudfront-headers"
    elif expected.startswith("alert:"):
        assert (answer.status, answer.alert) == (0, expected.split(":", 1)[1]), (answer.curl_exit, answer.error)
    else:
        status, verdict = expected.split(":", 1)
        assert (answer.status, answer.json.get("client_verify")) == (int(status), verdict), answer.body


@pytest.mark.parametrize("design, client, expected", MATRIX, ids=[f"{d}-{c or 'no-cert'}" for d, c, _ in MATRIX])
def test_viewer_mtls_matrix(edge, source, design, client, expected):
    check(edge[design].get(client, source), expected)


def test_resumed_sessions_keep_the_identity(edge, source):
    for answer in edge[REQUIRED].get_many("carol", source, count=3):
        check(answer, "ok")


def test_the_origin_gets_the_certificate_as_cloudfront_formats_it(edge, source, certs_dir):
    body = edge[REQUIRED].get("alice", source).json
    alice = pemfile.load_cert(certs.Layout(certs_dir).client_cert("alice"))
    assert body["identity_source"] == "CloudFront-Viewer-Cert-* headers from the load balancer"
    assert body["client_subject"] == alice.subject.rfc4514_string()
    assert body["client_issuer"] == alice.issuer.rfc4514_string()
    # the serial: lowercase hex in colon-separated pairs (AWS's example: 4a:3f:5c:92:d1:e8:7b:6c)
    hexed = f"{alice.serial_number:x}"
    hexed = "0" * (len(hexed) % 2) + hexed
    assert body["client_serial"] == ":".join(hexed[i:i + 2] for i in range(0, len(hexed), 2))
    # validity in ISO 8601, as AWS writes it: NotBefore=2023-09-21T01:50:17Z;NotAfter=...
    iso = "%Y-%m-%dT%H:%M:%SZ"
    assert body["client_validity"] == (f"NotBefore={alice.not_valid_before_utc.strftime(iso)};"
                                       f"NotAfter={alice.not_valid_after_utc.strftime(iso)}")
    pem_body = "".join(certs.Layout(certs_dir).client_cert("alice").read_text().splitlines()[1:])
    expected_start = "-----BEGIN%20CERTIFICATE-----%0A" + urllib.parse.quote(pem_body[:40], safe="")
    assert expected_start.startswith(body["client_leaf_start"][:len(expected_start)]) and body["client_leaf_start"]


def test_the_client_address_travels_in_x_forwarded_for(edge, source, lab):
    body = edge[REQUIRED].get("alice", source).json
    assert body["client_ip"] == source and body["client_ip_source"] == "X-Forwarded-For"
    assert body["peer_ip"] == lab.settings.lb_ips("cloudfront")[1]  # the TCP peer is the edge
    # CloudFront appends the viewer's address to an X-Forwarded-For the viewer sent: the
    # origin still takes the address CloudFront saw
    spoofed = edge[REQUIRED].get("alice", source, headers={"X-Forwarded-For": "6.6.6.6"}).json
    assert spoofed["client_ip"] == source


def test_forged_viewer_cert_headers_are_replaced_at_the_edge(edge, source):
    forged = {"CloudFront-Viewer-Cert-Subject": "CN=admin,O=mTLS Lab",
              "CloudFront-Viewer-Cert-Serial-Number": "01"}
    bob = edge[REQUIRED].get("bob", source, headers=forged).json
    assert bob["client_subject"].startswith("CN=bob,") and bob["client_serial"] != "01"
    # no certificate (optional mode): the edge sets no subject, so only its del-header stops
    # the forged one (set-header would hide a missing del-header in the case above)
    nobody = edge[OPTIONAL].get(None, source, headers=forged)
    assert nobody.status == 400 and nobody.json["client_verify"] == "NONE"


def test_headers_sent_straight_to_the_origin_are_not_believed(lab, from_host):
    web1 = lab.settings.backend_ip("web1")
    port = DESIGNS[REQUIRED].target.port  # the origin's CloudFront listener
    forged = {"CloudFront-Viewer-Cert-Subject": "CN=admin,O=mTLS Lab", "CloudFront-Viewer-Cert-Present": "1"}
    answer = request(from_host, None, port=port, address=web1, headers=forged)
    assert answer.status == 400 and answer.client_verify == "NONE", answer.body


def test_the_waf_at_the_edge_reads_what_a_certificate_holder_sends(edge, source):
    attack = edge[REQUIRED].get("alice", source, path=SQLI)
    assert attack.status == 403 and attack.json == {"error": "blocked by the WAF", "waf": "load balancer"}
    clean = edge[REQUIRED].get("alice", source, path="/whoami?id=42")
    assert clean.status == 200 and clean.json["client_verify"] == "SUCCESS"


def test_no_stickiness_at_the_edge(edge, source):
    """CloudFront pins no client to an origin: the same address, round robin. (Positive
    control of the same check: the NLB, sticky by source address, answers from one.)"""
    spread = {edge[REQUIRED].get("alice", source).backend for _ in range(6)}
    assert spread == {"web1", "web2"}
    pinned = {edge["nlb"].get("alice", source).backend for _ in range(6)}
    assert len(pinned) == 1


def test_lab_compare_shows_cloudfront_beside_the_alb(lab_cli):
    proc = lab_cli("compare", "--json")
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    row = {k: v for k, v in table[REQUIRED].items() if k not in ("summary", "evidence")}
    assert row == {
        "client_cert_auth": "works", "enforced_at": "load balancer, TLS handshake",
        "backend_sees_identity": "yes, CloudFront-Viewer-Cert-* headers (CN=alice)",
        "backend_sees_client_ip": "yes, X-Forwarded-For", "stickiness": "none",
        "waf_can_inspect": "yes, at the LB (403)", "sorry_page": "none: no health checks, origin errors pass through"}
    # C5 in one line each: the ALB with mutual TLS and its WAF gives the same two answers
    alb = table["alb-mtls-verify"]
    assert (alb["client_cert_auth"], alb["waf_can_inspect"]) == (row["client_cert_auth"], row["waf_can_inspect"])


def test_the_cloudfront_demo_observes_its_claim(lab_cli):
    proc = lab_cli("demo", "cloudfront-mtls")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "claim observed" in proc.stdout and "NOT seen" not in proc.stdout
    port = DESIGNS[REQUIRED].container_port
    assert re.search(rf"\$ docker compose .* curl .*www\.lab\.test:{port}/whoami", proc.stdout)  # its commands
