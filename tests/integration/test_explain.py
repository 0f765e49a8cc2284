"""`lab explain CLIENT`: what each running design does with one certificate, from live probes."""

import json

import pytest


def explain(lab_cli, client):
    out = lab_cli("explain", client, "--json")
    assert out.returncode == 0, out.stderr
    return {r["design"]: r for r in json.loads(out.stdout)}


@pytest.fixture(scope="module")
def expired(lab_cli):
    return explain(lab_cli, "expired")


@pytest.fixture(scope="module")
def alice(lab_cli):
    return explain(lab_cli, "alice")


@pytest.mark.parametrize("design", ["alb-mtls-verify", "nlb-tls-mtls"])
def test_expired_is_refused_at_the_load_balancer_with_aws_reason(expired, design):
    r = expired[design]
    assert r["client_sees"].startswith("handshake refused"), r
    assert r["tls_verify_status"] == "Failed:ClientCertExpired"
    assert r["target_sees"] == "never sees the request"
    assert r["aws"] == (f"{design}: handshake refused at the load balancer; connection log "
                        "tls_verify_status=Failed:ClientCertExpired; the target never sees the request")
    assert "Failed:ClientCertExpired" in r["connection_log"]


def test_expired_on_the_nlb_is_refused_by_the_backend(expired):
    r = expired["nlb"]
    assert r["client_sees"] == "HTTP 400, client_verify=FAILED:certificate has expired"
    assert r["target_sees"].startswith("web") and r["tls_verify_status"] is None
    assert r["connection_log"] is None


def test_expired_through_passthrough_is_logged_success_and_refused_behind(expired):
    r = expired["alb-mtls-passthrough"]
    assert r["tls_verify_status"] == "Success" and not r["client_sees"].startswith("HTTP 200")


def test_expired_at_cloudfront_is_refused_at_the_edge(expired):
    assert expired["cloudfront-mtls"]["client_sees"].startswith("handshake refused")


def test_alice_is_accepted_by_every_design_that_asks_for_her_certificate(alice):
    for design, r in alice.items():
        if design == "alb":  # negative control: mutual TLS off, the targets never get it
            assert r["client_sees"] == "HTTP 400, client_verify=NONE", r
            continue
        assert r["client_sees"].startswith("HTTP 200"), r
    assert alice["alb-mtls-verify"]["tls_verify_status"] == "Success"
    assert alice["nlb-tls-mtls"]["tls_verify_status"] == "Success"
    assert alice["alb-mtls-verify"]["aws"].startswith("alb-mtls-verify: accepted; connection log "
                                                      "tls_verify_status=Success")


def test_unknown_client_is_one_line_naming_the_known_ones(lab_cli):
    out = lab_cli("explain", "mallory")
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "alice" in out.stderr and "mallory" in out.stderr
