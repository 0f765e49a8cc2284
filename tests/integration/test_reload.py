"""`lab reload`: a config a server refuses changes nothing; when reload returns, what was
written to the PKI (a CRL, a whole new CA) is what every running design enforces."""

import datetime as dt

import pytest

from lab import certs, compare, pki, render
from lab.client import Host, request
from lab.wait import wait_for
from lab.errors import StackError

# How each design refuses a revoked client: its load balancer's TLS alert, or the
# backend's verdict (the plain ALB refuses everyone: it never asks for a certificate).
REVOKED = {
    "nlb": "400:FAILED:certificate revoked",
    "alb": "400:NONE",
    "alb-mtls-verify": "alert:certificate revoked",
    "alb-mtls-passthrough": "400:FAILED:certificate revoked",
    "alb-before": "ok",  # the application before the migration asks for no certificate: a revoked one goes unseen
    "nlb-tls-mtls": "alert:certificate revoked",
    "cloudfront-mtls": "alert:certificate revoked",
    "cloudfront-mtls-optional": "alert:certificate revoked",
}


@pytest.fixture(scope="module")
def clients(lab, docker_client):
    return compare.clients_for(lab.stack, docker_client)


def outcome(answer) -> str:
    if answer.status == 200:
        return "ok"
    if answer.status == 0:
        return f"alert:{answer.alert}"
    return f"{answer.status}:{answer.json.get('client_verify')}"


def _fresh_crl(lab) -> bytes:
    """The same revocations, signed again (a new CRL number): new trust material."""
    now = pki.utcnow()
    return certs.crl_bundle(lab.settings.certs_dir, last_update=now - pki.CLOCK_SKEW,
                            next_update=now + dt.timedelta(days=30))


def test_a_config_haproxy_refuses_changes_nothing(lab, docker_client):
    cfg = lab.settings.build_dir / "haproxy" / "nlb" / "haproxy.cfg"
    trust = lab.settings.build_dir / "trust" / "crl.pem"
    crl = lab.settings.certs_dir / "crl.pem"
    before, trust_before, saved = cfg.read_bytes(), trust.read_bytes(), crl.read_bytes()
    live = lab.stack.runtime_api().command("show env LAB_GENERATION")
    crl.write_bytes(_fresh_crl(lab))  # new trust material rides along with the refused config
    try:
        # HAProxy refuses timers over 2^31 ms (about 24.8 days); settings validation stops this
        # value at the door, so it is built here the way only code could.
        refused = type(lab.stack)(lab.settings.with_(stick_expire="30d"))
        with pytest.raises(StackError, match=r"nlb refused the new configuration.*unchanged"):
            refused.reload(dc=docker_client, services=("nlb",))
        assert cfg.read_bytes() == before
        assert trust.read_bytes() == trust_before  # put back
        assert not list(cfg.parent.glob("*" + render.STAGED))
        assert lab.stack.runtime_api().command("show env LAB_GENERATION") == live
        assert request(Host(lab.certs_dir), "alice", port=lab.nlb_port).status == 200
    finally:
        crl.write_bytes(saved)


def test_reload_tells_the_generation_every_server_serves(lab, docker_client):
    crl = lab.settings.certs_dir / "crl.pem"
    old = lab.stack.runtime_api().command("show env LAB_GENERATION").strip()
    crl.write_bytes(_fresh_crl(lab))  # a CRL alone must make a new generation
    lab.stack.reload(dc=docker_client)
    wanted = f"LAB_GENERATION={render.generation(lab.stack.settings)}"
    assert wanted != old
    for lb in ("nlb", "alb", "nlb-tls"):
        assert lab.stack.runtime_api(lb).command("show env LAB_GENERATION").strip() == wanted


def test_a_client_revoked_before_reload_is_refused_everywhere_when_it_returns(lab, docker_client, clients):
    """No waiting after reload: the CRL is enforced by every design once it returns."""
    source = lab.settings.client_pool.probe
    crl = lab.settings.certs_dir / "crl.pem"
    saved = crl.read_bytes()
    for design, client in clients.items():  # negative control: bob is in, except where nobody is
        wait_for(lambda c=client: c.get("bob", source).status in (200, 400), 15, what=f"{design} serving")
        expected = "400:NONE" if design == "alb" else "ok"
        assert outcome(client.get("bob", source)) == expected, design
    certs.revoke(lab.settings.certs_dir, "bob")
    try:
        lab.stack.reload(dc=docker_client)
        seen = {design: outcome(client.get("bob", source)) for design, client in clients.items()}
        assert seen == {d: REVOKED[d] for d in clients}
        assert outcome(clients["nlb"].get("alice", source)) == "ok"  # only bob
    finally:
        crl.write_bytes(saved)
        lab.stack.reload(dc=docker_client)
    lab.runtime_api.wait_up()


def test_the_client_container_trusts_a_renewed_ca_after_reload(lab, lab_cli, docker_client, clients):
    """`lab certs --force` makes a new CA; `lab reload` must bring it to the client
    container too (a file mount would keep the old inode, and every probe would fail)."""
    old_ca = certs.Layout(lab.settings.certs_dir).ca_cert.read_bytes()
    for command in (["certs", "--force"], ["reload"]):
        proc = lab_cli("-q", *command, timeout=120)
        assert proc.returncode == 0, proc.stderr
    assert certs.Layout(lab.settings.certs_dir).ca_cert.read_bytes() != old_ca
    box = clients["nlb"].box
    _, seen = box.exec(["cat", "/certs/ca.pem"])
    assert seen.encode() == certs.Layout(lab.settings.certs_dir).ca_cert.read_bytes()
    lab.runtime_api.wait_up(timeout=30)  # the health checks now present the new certificate
    assert outcome(clients["nlb"].get("alice", lab.settings.client_pool.probe)) == "ok"
