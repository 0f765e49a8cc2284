"""The contrast designs, end to end, each with its negative controls.

- alb: TLS ends at the ALB, which never asks for a certificate; the backends demand one
  and refuse everyone (the seed's starting point, claim C1). Cookie stickiness, X-Forwarded-For.
- alb-mtls-verify: the ALB verifies (a bad certificate fails the handshake) and forwards
  X-Amzn-Mtls-Clientcert-* headers, which the backends believe from the ALB only.
- alb-mtls-passthrough: the ALB forwards the chain; the backends verify it.
- nlb-tls-mtls: the NLB's TLS listener verifies; the client address is kept; no stickiness.
- WAF: a SQL injection is blocked where TLS ends at the load balancer, unseen through the NLB.
"""

import datetime as dt
import json
import os
import subprocess
import sys
import urllib.parse

import pytest

from lab import certs, compare, pemfile, pki
from lab.client import Host, request
from lab.credentials import Credentials
from lab.wait import wait_for
from lab.designs import DESIGNS

SQLI = f"/whoami?{compare.SQLI}"


@pytest.fixture(scope="module")
def clients(lab, docker_client):
    found = compare.clients_for(lab.stack, docker_client)
    assert set(found) == set(DESIGNS), "the test stack runs every design"
    return found


@pytest.fixture(scope="module")
def source(lab):
    return lab.settings.client_extra_ips[15]


# (design, client, expected outcome): "ok", "alert:<TLS alert>" (the load balancer ended
# the handshake with that alert), or a backend refusal "400:<client_verify>"
MATRIX = [
    ("nlb", "alice", "ok"),
    ("nlb", "rogue-ca", "400:FAILED:unable to verify the first certificate"),
    ("nlb", None, "400:NONE"),
    ("alb", "alice", "400:NONE"),            # the valid client is refused: C1
    ("alb", "rogue-ca", "400:NONE"),
    ("alb", None, "400:NONE"),
    ("alb-mtls-verify", "alice", "ok"),
    ("alb-mtls-verify", "carol", "ok"),
    ("alb-mtls-verify", "rogue-ca", "alert:unknown ca"),
    ("alb-mtls-verify", "revoked", "alert:certificate revoked"),
    ("alb-mtls-verify", "expired", "alert:certificate expired"),
    ("alb-mtls-verify", None, "alert:certificate required"),
    ("alb-mtls-passthrough", "alice", "ok"),
    ("alb-mtls-passthrough", "carol", "ok"),
    ("alb-mtls-passthrough", "rogue-ca", "400:FAILED:unable to get local issuer certificate"),
    ("alb-mtls-passthrough", "expired", "400:FAILED:certificate has expired"),
    ("alb-mtls-passthrough", "revoked", "400:FAILED:certificate revoked"),
    ("alb-mtls-passthrough", None, "400:NONE"),
    ("nlb-tls-mtls", "alice", "ok"),
    ("nlb-tls-mtls", "carol", "ok"),
    ("nlb-tls-mtls", "rogue-ca", "alert:unknown ca"),
    ("nlb-tls-mtls", "revoked", "alert:certificate revoked"),
    ("nlb-tls-mtls", None, "alert:certificate required"),
]


def check(answer, expected):
    if expected == "ok":
        assert answer.status == 200 and answer.json["client_verify"] == "SUCCESS", answer.body
    elif expected.startswith("alert:"):
        assert (answer.status, answer.alert) == (0, expected.split(":", 1)[1]), (answer.curl_exit, answer.error)
    else:
        status, verdict = expected.split(":", 1)
        assert (answer.status, answer.json.get("client_verify")) == (int(status), verdict), answer.body


@pytest.mark.parametrize("design, client, expected", MATRIX,
                         ids=[f"{d}-{c or 'no-cert'}" for d, c, _ in MATRIX])
def test_design_matrix(clients, source, design, client, expected):
    check(clients[design].get(client, source), expected)


RESUMPTION = [(d, c, e) for d, c, e in MATRIX if c in ("alice", "carol")]


@pytest.mark.parametrize("design, client, expected", RESUMPTION,
                         ids=[f"{d}-{c}" for d, c, _ in RESUMPTION])
def test_same_client_several_requests_in_one_process(clients, source, design, client, expected):
    """Session resumption, as browsers do it all the time: curl opens a new connection per
    request and resumes the TLS session of the first. A valid client is never refused."""
    answers = clients[design].get_many(client, source, count=3)
    assert len(answers) == 3
    for answer in answers:
        check(answer, expected)
    if design == "nlb":  # positive control: the sessions were really resumed (nginx says so)
        assert [a.json.get("tls_session_reused") for a in answers] == [".", "r", "r"], answers


def test_alb_never_asks_for_a_certificate_but_the_nlb_does(clients):
    def asks(design):
        c = clients[design]
        _, out = c.box.exec(["openssl", "s_client", "-connect", f"{c.address}:{c.port}",
                             "-servername", "www.lab.test", "-CAfile", "/certs/ca.pem"])
        # (a certificate is requested, with the trust store's CA names, without them)
        return ("Requested Signature Algorithms" in out, "Acceptable client certificate CA names" in out,
                "No client certificate CA names sent" in out)

    assert asks("nlb") == (True, True, False)
    assert asks("alb") == (False, False, True)
    # AWS's default (AdvertiseTrustStoreCaNames off): asked, but not told which CAs it trusts
    # (advertising is tests/integration/test_alb_options.py)
    assert asks("alb-mtls-verify") == (True, False, True)


def test_verify_mode_headers_carry_the_identity(clients, source, certs_dir):
    answer = clients["alb-mtls-verify"].get("alice", source)
    alice = pemfile.load_cert(certs.Layout(certs_dir).client_cert("alice"))
    body = answer.json
    assert body["identity_source"] == "X-Amzn-Mtls-* headers from the load balancer"
    assert body["client_subject"] == alice.subject.rfc4514_string()
    assert body["client_issuer"] == alice.issuer.rfc4514_string()
    assert int(body["client_serial"], 16) == alice.serial_number
    assert body["client_validity"].startswith("NotBefore=") and ";NotAfter=" in body["client_validity"]
    pem_body = "".join(certs.Layout(certs_dir).client_cert("alice").read_text().splitlines()[1:])
    expected_start = "-----BEGIN%20CERTIFICATE-----%0A" + urllib.parse.quote(pem_body[:40], safe="")
    leaf = body["client_leaf_start"]  # the first bytes of the header, as the backend received it
    assert len(leaf) >= 32 and expected_start.startswith(leaf[:len(expected_start)]), leaf


def test_alb_designs_keep_the_client_address_in_x_forwarded_for(clients, source, lab):
    for design in ("alb-mtls-verify", "alb-mtls-passthrough"):
        body = clients[design].get("alice", source).json
        assert body["client_ip"] == source and body["client_ip_source"] == "X-Forwarded-For"
        assert body["peer_ip"] == lab.settings.lb_ips("alb")[1]
    body = clients["nlb-tls-mtls"].get("alice", source).json
    assert body["client_ip"] == source and body["client_ip_source"] == "PROXY protocol v2"
    assert body["peer_ip"] == lab.settings.lb_ips("nlb-tls")[1]


def test_alb_stickiness_is_a_cookie_not_the_source_address(clients, source):
    alb = clients["alb-mtls-verify"]
    first = alb.get("alice", source)
    assert first.set_cookie.startswith("AWSALB=") and "HttpOnly" in first.set_cookie
    cookie = first.set_cookie.split(";")[0]
    without = {alb.get("alice", source).backend for _ in range(6)}
    with_cookie = {alb.get("alice", source, cookie=cookie).backend for _ in range(6)}
    assert without == {"web1", "web2"}  # same address, no cookie: round robin
    assert with_cookie == {cookie.split("=")[1]}  # the cookie names the target


def test_nlb_tls_listener_is_round_robin_not_sticky(clients, source):
    """AWS: "Sticky sessions are not supported for TLS or QUIC listeners" (docs/aws-parity.md)."""
    tls = [clients["nlb-tls-mtls"].get("alice", source).backend for _ in range(6)]
    assert set(tls) == {"web1", "web2"}, tls  # one address, both targets
    # the negative control: the NLB's TCP listener pins that same address
    tcp = {clients["nlb"].get("alice", source).backend for _ in range(6)}
    assert len(tcp) == 1, tcp


def test_spoofed_identity_headers_are_replaced_at_the_alb(clients, source):
    forged = {"X-Amzn-Mtls-Clientcert-Subject": "CN=admin,O=mTLS Lab",
              "X-Amzn-Mtls-Clientcert-Serial-Number": "01", "X-Forwarded-For": "6.6.6.6"}
    bob = clients["alb-mtls-verify"].get("bob", source, headers=forged).json
    assert bob["client_subject"].startswith("CN=bob,") and bob["client_serial"] != "01"
    assert bob["client_ip"] == source


def test_spoofed_chain_header_is_replaced_at_the_alb(clients, source, certs_dir):
    """Passthrough: a forged chain header (alice's public certificate) is replaced by bob's."""
    alice_pem = certs.Layout(certs_dir).client_cert("alice").read_text()
    forged = {"X-Amzn-Mtls-Clientcert": urllib.parse.quote(alice_pem)}
    bob = clients["alb-mtls-passthrough"].get("bob", source, headers=forged).json
    assert bob["client_subject"].startswith("CN=bob,")
    # With no client certificate the ALB sets no chain header, so only its `del-header` stops
    # the client's copy: this is the check that fails when those lines are removed (the
    # verify-mode test above cannot: `set-header` replaces those headers anyway).
    nobody = clients["alb-mtls-passthrough"].get(None, source, headers=forged)
    assert nobody.status == 400 and nobody.json["client_verify"] == "NONE"


def test_headers_sent_straight_to_the_backend_are_not_believed(lab, certs_dir, from_host):
    """From the host (on the vpc bridge, not the ALB's address) to the header listeners."""
    web1 = lab.settings.backend_ip("web1")
    alice_pem = certs.Layout(certs_dir).client_cert("alice").read_text()
    cases = {8444: {"X-Amzn-Mtls-Clientcert-Subject": "CN=admin,O=mTLS Lab"},
             8445: {"X-Amzn-Mtls-Clientcert": urllib.parse.quote(alice_pem)}}
    for port, forged in cases.items():
        answer = request(from_host, None, port=port, address=web1, headers=forged)
        assert answer.status == 400, (port, answer)
        assert answer.client_verify == "NONE" and answer.json["error"] == "client certificate refused", answer.body


def test_nlb_tls_listener_serves_only_the_nlb(lab, certs_dir):
    """The backend listener behind the NLB's TLS listener trusts it did the checking: nobody
    else may use it (a direct connection with a PROXY header is refused)."""
    ca = str(certs.Layout(certs_dir).ca_cert)
    web1 = lab.settings.backend_ip("web1")
    out = subprocess.run(["curl", "-sS", "--max-time", "5", "--haproxy-protocol", "--cacert", ca, "--resolve",
                          f"www.lab.test:8446:{web1}", "https://www.lab.test:8446/whoami", "-w", " %{http_code}"],
                         capture_output=True, text=True, check=False).stdout
    assert out.endswith(" 403") and "NLB TLS listener only" in out


@pytest.mark.parametrize("design, blocked_at", [
    ("nlb", None), ("alb", "load balancer"), ("alb-mtls-verify", "load balancer"),
    ("alb-mtls-passthrough", "load balancer"), ("nlb-tls-mtls", None)])
def test_waf_sees_the_payload_only_where_tls_ends_at_the_lb(clients, source, design, blocked_at):
    attack = clients[design].get("alice", source, path=SQLI)
    clean = clients[design].get("alice", source, path="/whoami?id=42")
    assert clean.status in (200, 400)  # 400: plain ALB, which refuses everyone anyway
    if blocked_at:
        assert attack.status == 403 and attack.json == {"error": "blocked by the WAF", "waf": blocked_at}
    else:
        assert attack.status == 200 and attack.json["client_verify"] == "SUCCESS"


def test_waf_on_the_backends_blocks_through_the_nlb_too(lab, docker_client, clients, source):
    waf_on = type(lab.stack)(lab.settings.with_(backend_waf=True))
    waf_on.reload(dc=docker_client, services=("web1", "web2"))
    try:
        attack = clients["nlb"].get("alice", source, path=SQLI)
        assert attack.status == 403 and attack.json["waf"].startswith("backend web")
        assert clients["nlb"].get("alice", source).status == 200  # clean traffic still served
    finally:
        lab.stack.reload(dc=docker_client, services=("web1", "web2"))
    assert clients["nlb"].get("alice", source, path=SQLI).status == 200  # and off again


# where the sorry page comes from, in the session's mode (LAB_SORRY, dns by default): with dns
# www.lab.test fails over from the NLB, and the other checking load balancers just fail open
SORRY_NLB = {"dns": "DNS failover: www.lab.test -> the cdn sorry site; the NLB fails open",
             "lb": "in the LB: a backup server (the lab's shortcut)"}
SORRY_FAIL_OPEN = {"dns": "none: it fails open, and no DNS record fails over from it",
                   "lb": "in the LB: a backup server (the lab's shortcut)"}
SORRY_ALB = {"dns": "none: it fails open; DNS fails over from it while www.lab.test is its alias (lab migrate)",
             "lb": "in the LB: a backup server (the lab's shortcut)"}


def test_lab_compare_json(lab, lab_cli):
    mode = lab.settings.sorry
    proc = lab_cli("compare", "--json")
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    cells = {d: {k: v for k, v in r.items() if k not in ("summary", "evidence")} for d, r in table.items()}
    assert cells["nlb"] == {
        "client_cert_auth": "works", "enforced_at": "backend nginx, TLS",
        "backend_sees_identity": "yes, TLS (CN=alice)", "backend_sees_client_ip": "yes, PROXY protocol v2",
        "stickiness": "source IP", "waf_can_inspect": "no: passes unseen", "sorry_page": SORRY_NLB[mode]}
    assert cells["alb"] == {
        "client_cert_auth": "BROKEN: valid client refused (NONE)",
        "enforced_at": "nowhere: the backend nginx, TLS check never gets the certificate",
        "backend_sees_identity": "no", "backend_sees_client_ip": "X-Forwarded-For only (logged)",
        "stickiness": "cookie AWSALB", "waf_can_inspect": "yes, at the LB (403)", "sorry_page": SORRY_ALB[mode]}
    assert cells["alb-mtls-verify"] == {
        "client_cert_auth": "works", "enforced_at": "load balancer, TLS handshake",
        "backend_sees_identity": "yes, X-Amzn-Mtls-* headers (CN=alice)",
        "backend_sees_client_ip": "yes, X-Forwarded-For", "stickiness": "cookie AWSALB",
        "waf_can_inspect": "yes, at the LB (403)", "sorry_page": SORRY_ALB[mode]}
    assert cells["alb-mtls-passthrough"] == {
        "client_cert_auth": "works", "enforced_at": "backend verifier",
        "backend_sees_identity": "yes, chain header, verified by backend (CN=alice)",
        "backend_sees_client_ip": "yes, X-Forwarded-For", "stickiness": "cookie AWSALB",
        "waf_can_inspect": "yes, at the LB (403)", "sorry_page": SORRY_ALB[mode]}
    assert cells["nlb-tls-mtls"] == {
        "client_cert_auth": "works", "enforced_at": "load balancer, TLS handshake",
        "backend_sees_identity": "no: verified at the LB, not forwarded",
        "backend_sees_client_ip": "yes, PROXY protocol v2", "stickiness": "none",
        "waf_can_inspect": "no: passes unseen", "sorry_page": SORRY_FAIL_OPEN[mode]}
    # the seed's starting point: nobody is asked for a certificate, everyone gets in
    before = cells["alb-before"]
    assert before["client_cert_auth"] == "none: no certificate asked, everyone gets in"
    assert before["enforced_at"] == "nowhere" and before["backend_sees_identity"] == "no"
    assert before["backend_sees_client_ip"] == "yes, X-Forwarded-For" and before["stickiness"] == "cookie AWSALB"
    # the evidence behind the cells is there too
    assert table["alb"]["evidence"]["backend_log"]["x_forwarded_for"] == table["alb"]["evidence"]["source_ip"]


@pytest.mark.parametrize("name", ["alb-breaks-mtls", "nlb-passthrough", "nat-stickiness", "client-ip",
                                  "waf-tradeoff", "alb-mtls-headers", "header-spoofing", "sorry-page"])
def test_demo_observes_its_claim(lab, lab_cli, name):
    proc = lab_cli("demo", name)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "claim observed" in proc.stdout and "NOT seen" not in proc.stdout
    if name == "sorry-page" and lab.settings.sorry == "dns":  # the ALB beside the NLB, failing open
        assert "✓ seen: the ALB fails open as well" in proc.stdout, proc.stdout[-2000:]
    assert "$ docker compose" in proc.stdout or "$ lab" in proc.stdout  # it shows its commands


def test_compare_and_demos_run_with_the_fewest_client_addresses(lab_cli):
    """LAB_CLIENT_IPS=8 (the minimum): every role still has an address of its own (the
    client container holds more, so the same stack serves)."""
    env = {"LAB_CLIENT_IPS": "8"}
    proc = lab_cli("compare", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["nlb"]["stickiness"] == "source IP"
    proc = lab_cli("demo", "nat-stickiness", env=env)
    assert proc.returncode == 0 and "claim observed" in proc.stdout, proc.stdout[-1500:] + proc.stderr


def test_demo_refuses_when_its_design_is_not_running(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env.update({"LAB_HOME": str(tmp_path), "LAB_PROJECT": "mtlslab-not-running"})
    proc = subprocess.run([sys.executable, "-m", "lab", "demo", "alb-breaks-mtls"], capture_output=True,
                          text=True, env=env, check=False, timeout=120)
    assert proc.returncode == 1 and "needs the" in proc.stderr and "lab up --all-designs" in proc.stderr


def test_reload_brings_a_new_crl_to_every_load_balancer_that_verifies(lab, docker_client, clients, source,
                                                                       runtime_api):
    """`lab reload` (no services named) reloads the design load balancers too: a stale CRL
    written to the lab's PKI reaches HAProxy's verify listeners only through it."""
    crl = lab.settings.certs_dir / "crl.pem"
    saved = crl.read_bytes()
    now = pki.utcnow()
    verifiers = ("alb-mtls-verify", "nlb-tls-mtls")

    def alice(design):
        return clients[design].get("alice", source)

    def wait_until_served(when, timeout):
        for design in verifiers:
            wait_for(lambda d=design: alice(d).status == 200, timeout, what=f"{design} serving alice {when}")

    wait_until_served("before the test", 15)  # an earlier test (sorry-page demo) may have stopped the backends
    crl.write_bytes(certs.crl_bundle(lab.settings.certs_dir, last_update=now - dt.timedelta(days=40),
                                     next_update=now - dt.timedelta(days=10)))
    try:
        # negative control: written but not loaded, the running load balancers still accept alice
        assert {d: alice(d).status for d in verifiers} == dict.fromkeys(verifiers, 200)
        lab.stack.reload(dc=docker_client)
        for design in verifiers:
            assert wait_for(lambda d=design: alice(d).handshake_failed, 10,
                                  what=f"{design} refusing with the stale CRL")
    finally:
        crl.write_bytes(saved)
        lab.stack.reload(dc=docker_client)
    wait_until_served("again", 10)
    runtime_api.wait_up()


def test_the_health_check_certificate_opens_health_checks_only(clients, source, lab, certs_dir):
    """The load balancers' health-check identity is valid (it must pass the backends' CRL
    and CA checks), but it is no user: every design refuses it for /whoami."""
    lay = certs.Layout(certs_dir)
    # the client container has no copy of the health key: the request goes from the host
    health = Credentials(certs_dir, None, cert=lay.health_cert, key=lay.health_key)
    from_host = Host(certs_dir)
    refused, answers = {}, {}
    for design in clients:
        port = lab.nlb_port if design == "nlb" else lab.stack.design_port(design)
        answers[design] = request(from_host, health, port=port)
        refused[design] = answers[design].status
    # alb-before asks for no certificate: everyone gets in, anonymous (the certificate unseen)
    assert refused == {"nlb": 403, "alb": 400, "alb-mtls-verify": 403,
                       "alb-mtls-passthrough": 400, "alb-before": 200, "nlb-tls-mtls": 0,
                       "cloudfront-mtls": 403, "cloudfront-mtls-optional": 403}, refused
    assert answers["alb-before"].json["client_subject"] == "" and answers["alb-before"].client_verify == "NONE"
    # nor through a path that only looks like /healthz ("$" in a regex would match before "\n");
    # http.client sends the path as it is (curl needs --path-as-is)
    for path in ("/healthz%0A", "/healthz%0a", "/healthz/", "/healthz/../whoami?x", "//whoami"):
        assert request(from_host, health, port=lab.nlb_port, path=path).status == 403, path
    # positive control: the same certificate opens /healthz on a backend (the checks' path)
    ok = request(from_host, health, port=lab.nlb_port, path="/healthz")
    assert (ok.status, ok.body) == (200, "ok")
