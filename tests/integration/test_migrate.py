"""The cutover drill (`lab migrate`, lab/migrate.py) and the DNS server's API it uses
(lab/dnsapi.py), on the running lab: real PowerDNS, HAProxy and nginx, curl from the client
container's addresses.

The drill's bound for a client to move is its TTL, one probe interval and one probe's time,
plus a second for the DNS server's first look at the new primary (migrate.Drill.bound_s).
"""

import json

import pytest

from lab import migrate, route53
from lab.client import request
from lab.containers import compose_container
from lab.dnsapi import DnsApi


@pytest.fixture(scope="module")
def dns_port(lab) -> int:
    return route53.host_port(lab.stack)


@pytest.fixture
def api(lab):
    api = DnsApi(lab.stack, lab.dc)
    yield api
    api.set_alias(route53.PRIMARY)  # whatever the test did: the lab's default


def test_the_api_moves_the_alias_and_the_client_follows_it(lab, api, dns_port, from_client):
    s = lab.settings
    alb, nlb = s.lb_ips("alb")[0], s.lb_ips("nlb")[0]
    assert api.alias() == "nlb" and route53.resolve(dns_port)[0] == [nlb]
    api.set_alias("alb")
    api.wait_answer(alb, timeout=5)
    assert api.alias() == "alb"
    # the client container resolves through the lab's DNS (no cache): it is on the ALB's
    # before-migration listener now, served without a certificate
    before = request(from_client, None, path="/whoami", timeout=3)
    assert before.ok and before.json["listener"] == "before" and before.json["client_verify"] == "NONE"
    assert before.set_cookie.startswith("AWSALB=")  # the ALB's cookie stickiness
    api.set_alias("nlb")
    api.wait_answer(nlb, timeout=5)
    # negative control: the same request on the NLB is refused, for want of a certificate
    after = request(from_client, None, path="/whoami", timeout=3)
    assert after.status == 400 and after.json["listener"] == "tls"


def test_the_api_is_for_the_operator_only(lab, client_box):
    dns_internet, dns_vpc = route53.dns_ips(lab.settings)
    # not from the internet side (the client container), nor from the vpc (a backend)
    rc, out = client_box.exec(["curl", "-sS", "--max-time", "2", f"http://{dns_internet}:{route53.API_PORT}/"])
    assert rc != 0, out
    web1 = compose_container(lab.dc, lab.settings.project, "web1")
    rc, out = web1.exec_run(["curl", "-sS", "--max-time", "2", f"http://{dns_vpc}:{route53.API_PORT}/"])
    assert rc != 0, out
    # positive control: the same curl from web1 reaches a vpc service (the NLB's target health)
    rc, out = web1.exec_run(["curl", "-s", "--max-time", "2", "-o", "/dev/null", "-w", "%{http_code}",
                             f"http://{lab.settings.lb_ips('nlb')[1]}:{route53.TARGET_HEALTH_PORT}/target-health"])
    assert out.decode() == "200"
    dns = compose_container(lab.dc, lab.settings.project, route53.DNS.name)
    # inside the DNS container: without the key the API refuses (401), with it (the operator's
    # `docker exec`) it answers; the key file is root's only
    url = f"http://127.0.0.1:{route53.API_PORT}/api/v1/servers/localhost/zones"
    rc, out = dns.exec_run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url])
    assert out.decode() == "401"
    rc, out = dns.exec_run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                            f"@{route53.API_DIR}/api.header", url])
    assert out.decode() == "200"
    rc, out = dns.exec_run(["stat", "-c", "%a %U", f"{route53.API_DIR}/api.header"])
    assert out.decode().strip() == "600 root"
    # nothing of the key on the host
    key = dns.exec_run(["cat", f"{route53.API_DIR}/api.header"]).output.decode().split(": ", 1)[1].strip()
    assert all(key not in p.read_text(errors="replace") for p in lab.settings.build_dir.rglob("*") if p.is_file())


def test_the_drill_moves_everyone_locks_out_who_has_no_certificate_and_rolls_back(lab, lab_cli, dns_port):
    proc = lab_cli("migrate", "--json", timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["unexpected"] == [] and report["alias_restored_to"] == "nlb"
    bound = report["bound_s"]
    assert bound == lab.settings.dns_ttl + migrate.PROBE_INTERVAL_S + migrate.PROBE_TIMEOUT_S + 1
    before, cut, back = (report["phases"][p]["clients"] for p in ("before", "cutover", "rollback"))
    certs = {name: row["certificate"] for name, row in before.items()}
    assert [n for n, c in certs.items() if c] and [n for n, c in certs.items() if not c]  # both kinds
    for name, cert in certs.items():
        # before: everyone on the ALB, served, one backend each (its cookie)
        assert list(before[name]["fronts"]) == ["alb"]
        assert set(before[name]["fronts"]["alb"]["outcomes"]) == {"served"}
        assert len(before[name]["fronts"]["alb"]["backends"]) == 1
        # each moved within the bound, and not at once for all: the answers ran out at their TTL
        for phase in (cut, back):
            assert 0 <= phase[name]["moved_after_s"] <= bound, (name, phase[name])
        nlb = cut[name]["fronts"]["nlb"]
        if cert:
            assert nlb["outcomes"] == {"served": nlb["requests"]} and nlb["identity"][0].startswith(f"CN={cert},")
            assert "locked_out" not in cut[name]
        else:  # locked out on the NLB, access back on the rollback
            assert nlb["outcomes"] == {"refused": nlb["requests"]} and cut[name]["locked_out"] is True
            assert back[name]["access_back"] is True
        assert cut[name]["errors"] == back[name]["errors"] == 0
    assert len({row["moved_after_s"] for row in cut.values()}) > 1
    # the alias is as it was: the NLB
    assert route53.resolve(dns_port)[0] == [lab.settings.lb_ips("nlb")[0]]


def test_the_drill_fails_when_the_nlb_does_not_serve(lab, lab_cli, dns_port):
    """Negative control: with the NLB paused, its target health does not answer, the DNS server
    hands out the sorry site instead, nobody reaches the NLB: exit 1, naming why."""
    nlb = compose_container(lab.dc, lab.settings.project, "nlb")
    nlb.pause()
    try:
        proc = lab_cli("migrate", "--json", timeout=180)
    finally:
        nlb.unpause()
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert any("cutover" in line and "moved after None" in line for line in report["unexpected"])
    assert report["alias_restored_to"] == "nlb"
    api = DnsApi(lab.stack, lab.dc)
    assert api.alias() == "nlb"
    api.wait_answer(lab.settings.lb_ips("nlb")[0], timeout=15)  # the NLB is healthy again


def test_the_drill_needs_the_before_listener(lab, lab_cli):
    proc = lab_cli("migrate", env={"LAB_DESIGNS": "nlb-tls-mtls"}, timeout=60)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "lab up --design alb-before" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_before_listener_believes_the_alb_only(lab, from_client):
    s = lab.settings
    # through the ALB: a client's own X-Forwarded-For is replaced by the ALB's
    source = s.client_pool.users[6]
    answer = request(from_client, None, path="/whoami", address=s.lb_ips("alb")[0], source=source,
                     headers={"X-Forwarded-For": "192.0.2.66"}, timeout=3)
    assert answer.ok and answer.json["listener"] == "before" and answer.json["client_ip"] == source
    # straight to the backend from inside the vpc (another backend): refused
    web2 = compose_container(lab.dc, s.project, "web2")
    rc, out = web2.exec_run(["curl", "-sk", "--max-time", "3", "-o", "/dev/null", "-w", "%{http_code}",
                             f"https://{s.backend_ip('web1')}:8449/whoami"])
    assert out.decode() == "403"


def test_a_reload_restarts_the_dns_server_only_for_a_new_zone(lab, api, dns_port):
    s = lab.settings
    api.set_alias("alb")
    api.wait_answer(s.lb_ips("alb")[0], timeout=5)
    lab.stack.reload(dc=lab.dc)  # nothing of the zone changed: no restart, the moved alias stays
    assert api.alias() == "alb" and route53.resolve(dns_port)[0] == [s.lb_ips("alb")[0]]
    # a new TTL: the rendered zone again, the alias the NLB (a restart may publish another port
    # when the lab's ports are Docker's choice, as in the tests: ask again)
    with lab.reloaded(("dns",), dns_ttl=7):
        fresh = DnsApi(lab.stack, lab.dc)
        assert fresh.alias() == "nlb" and route53.resolve(fresh.port) == ([s.lb_ips("nlb")[0]], 7)
    assert route53.resolve(route53.host_port(lab.stack))[1] == s.dns_ttl
