"""The DNS layer, running: Route 53's failover pair for www.lab.test on PowerDNS, the cdn sorry
site, the NLB failing open, and failover/failback measured against bounds derived from the
settings (lab/failover.py `bounds`, docs/aws-parity.md "DNS failover"):

    HAProxy sees no target   <= (fall + 1) x (inter + 1 s timeout check)
    DNS answers the secondary <= that + the checker's interval + 1 s (its check timeout) + a probe (2 s)
    a cached client follows   <= that + TTL, and not before TTL - the age of its answer
Failback adds the containers' start (10 s allowance) and `rise` checks.
"""

import contextlib
import os
import secrets
import socket
import ssl
import subprocess
import sys

import dns.message
import dns.query
import pytest
from cryptography import x509

from lab import cdncert, certs, docker_env, failover, readiness, route53
from lab.client import Host, request
from lab.containers import compose_container
from lab.errors import StackError
from lab.fault import Faults
from lab.settings import Settings
from lab.stack import Stack
from lab.ui import UI
from lab.wait import wait_for

SLACK_S = 0.3  # the cached client's own clock: it resolved a moment before the change


@pytest.fixture(scope="module")
def dns_port(lab) -> int:
    return route53.host_port(lab.stack)


def test_www_resolves_to_the_nlb_with_the_records_ttl(lab, dns_port):
    answer, ttl = route53.resolve(dns_port)
    assert answer == [lab.settings.lb_ips("nlb")[0]] and ttl == lab.settings.dns_ttl
    # over TCP too (published beside UDP: the same port when set, Docker's two picks with 0)
    reply = dns.query.tcp(dns.message.make_query("www.lab.test", "A"), "127.0.0.1",
                          port=route53.host_port(lab.stack, "tcp"), timeout=3)
    assert [r.address for rrset in reply.answer for r in rrset] == answer


def test_the_client_container_resolves_through_the_lab_dns_server(lab, client_box):
    s = lab.settings
    # sorry.www.lab.test exists only in the lab's zone: Docker's resolver forwarded the query
    rc, out = client_box.exec(["getent", "hosts", "sorry.www.lab.test"])
    assert rc == 0 and out.split()[0] == route53.cdn_ip(s), out
    rc, out = client_box.exec(["getent", "hosts", "www.lab.test"])
    assert rc == 0 and out.split()[0] == s.lb_ips("nlb")[0], out
    # negative control: a name the zone does not hold is not made up
    rc, _ = client_box.exec(["getent", "hosts", "nowhere.lab.test"])
    assert rc != 0


def _connects(container, address: str, port: int) -> bool:
    rc, _ = container.exec_run(["timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}"])
    return rc == 0


def test_target_health_is_read_by_the_dns_server_over_the_vpc_only(lab, docker_client):
    s = lab.settings
    public, private = s.lb_ips("nlb")
    dns = compose_container(docker_client, s.project, "dns")
    client = compose_container(docker_client, s.project, "client")
    probe = (f"exec 3<>/dev/tcp/{private}/{route53.TARGET_HEALTH_PORT}; "
             f"printf 'GET {route53.TARGET_HEALTH_URI} HTTP/1.0\\r\\n\\r\\n' >&3; head -1 <&3")
    rc, out = dns.exec_run(["timeout", "3", "bash", "-c", probe])
    assert rc == 0 and out.decode().split()[1] == "200", out
    assert _connects(client, public, 443)  # positive control: the client reaches the NLB
    assert not _connects(client, public, route53.TARGET_HEALTH_PORT)


def test_the_sorry_site_has_its_own_certificate_and_asks_for_none(lab):
    s = lab.settings
    port = route53.cdn_port(lab.stack)
    page = request(Host(s.certs_dir), None, port=port, path="/")
    assert page.status == 503 and page.backend == "cdn" and "down for maintenance" in str(page.body).lower()
    ctx = ssl.create_default_context(cafile=str(certs.Layout(s.certs_dir).ca_cert))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="www.lab.test") as tls:  # verified by the lab CA
        leaf = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    server = x509.load_pem_x509_certificate(certs.Layout(s.certs_dir).server_cert.read_bytes())
    assert leaf.serial_number != server.serial_number  # not the backends' certificate
    assert leaf.serial_number == x509.load_pem_x509_certificate(cdncert.paths(s.certs_dir)[0].read_bytes()).serial_number


def test_failover_and_failback_for_a_fresh_and_a_cached_client(lab, docker_client):
    s = lab.settings
    seen = {}

    def while_down(via):
        seen["page"] = request(via, None, path="/")
        seen["nlb"] = request(via, "alice", path="/whoami", address=s.lb_ips("nlb")[0], timeout=3)

    if s.sorry != "dns":
        pytest.skip("LAB_SORRY=dns only: with lb the record never moves (next test)")
    r = failover.measure(lab.stack, docker_client, during=while_down)
    print(f"\nDNS failover: {r}")
    limits, ttl = r["bounds_s"], s.dns_ttl
    fo, fb = r["failover"], r["failback"]
    for phase in ("failover", "failback"):
        for name, t in r[phase]["clients"].items():
            assert t is not None and t <= limits[f"{phase}_{name}"], (phase, name, r)
    # the DNS server moves only after the load balancer saw its targets go: `fall` checks
    assert (s.check_fall - 1) * s.check_inter_seconds <= fo["dns_answer_after_s"] <= limits["failover_fresh"]
    assert fo["dns_answers"] == sorted([s.lb_ips("nlb")[0], route53.cdn_ip(s)])
    # a client holding an answer keeps it until its TTL runs out: the dead primary, then the sorry site
    assert fo["clients"]["cached"] >= ttl - r["cached_answer_age_at_stop_s"] - SLACK_S
    assert fb["clients"]["cached"] >= ttl - r["cached_answer_age_at_start_s"] - SLACK_S
    # while down: the sorry site over TLS without a certificate; the NLB itself failed open
    page = seen["page"]
    assert page.status == 503 and page.backend == "cdn" and "down for maintenance" in str(page.body).lower()
    assert seen["nlb"].status == 0, seen["nlb"]
    lab.runtime_api.wait_up(("web1", "web2"), timeout=30)


def test_the_secondary_has_no_health_check_as_route53s_alias_to_cloudfront(lab, docker_client, dns_port):
    """Route 53: a record without a health check is always healthy, so with the primary unhealthy
    the secondary is answered even when the sorry site is down (PowerDNS with a checked
    secondary would answer either at random: every one of ten answers must be the cdn)."""
    if lab.settings.sorry != "dns":
        pytest.skip("LAB_SORRY=dns only")
    s = lab.settings
    nlb, cdn = s.lb_ips("nlb")[0], route53.cdn_ip(s)
    site = compose_container(docker_client, s.project, route53.CDN.name)
    faults = Faults(lab.stack, docker_client)
    site.stop(timeout=2)
    try:
        # negative control: the sorry site down changes nothing while the primary is healthy
        assert [route53.resolve(dns_port)[0] for _ in range(10)] == [[nlb]] * 10
        faults.inject("stop", "all")
        try:
            wait_for(lambda: route53.resolve(dns_port)[0] == [cdn], failover.bounds(s)["failover_fresh"],
                     what="the DNS server answering the sorry site")
            assert [route53.resolve(dns_port)[0] for _ in range(10)] == [[cdn]] * 10
        finally:
            faults.restore("stop", "all")
    finally:
        site.start()
    readiness.wait(lab.stack, docker_client, timeout=60)
    assert route53.resolve(dns_port)[0] == [nlb]


@contextlib.contextmanager
def sorry_in_the_lb(lab, docker_client):
    """The block with LAB_SORRY=lb on the NLB (reloaded), then back to the session's mode."""
    with lab.reloaded(("nlb",), ready=True, sorry="lb", sorry_auto=False) as changed:
        yield changed


def test_with_sorry_lb_the_load_balancer_answers_and_dns_never_moves(lab, docker_client):
    """The negative control of the DNS story: with the backup server in the NLB its target group
    stays healthy (nbsrv counts the backup), so the record keeps answering the NLB."""
    if lab.settings.sorry != "dns":
        pytest.skip("the session runs LAB_SORRY=lb already")
    with sorry_in_the_lb(lab, docker_client) as stack:
        assert stack.settings.sorry == "lb"
        r = failover.measure(stack, docker_client)
    print(f"\nLAB_SORRY=lb: {r}")
    assert r["failover"]["clients"]["fresh"] is not None and r["failover"]["clients"]["cached"] is not None
    assert "sorry site" not in r["failover"]["seen"]["fresh"] and "sorry site" not in r["failover"]["seen"]["cached"]
    assert r["failover"]["dns_answers"] == [lab.settings.lb_ips("nlb")[0]]
    assert r["failover"]["clients"]["fresh"] <= r["bounds_s"]["failover_fresh"]
    lab.runtime_api.wait_up(("web1", "web2"), timeout=30)


# -- bad input ---------------------------------------------------------------------------

ANY_PORT = {var: "0" for var in Settings().all_host_ports}


def _project_containers(docker_client, project):
    return docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})


def test_the_dns_port_in_use_over_udp_is_named_and_nothing_starts(tmp_path, docker_client):
    project = f"mtlslab-dnsport-{secrets.token_hex(3)}"
    internet, vpc = docker_env.free_subnets(docker_client, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:  # UDP only: TCP is free
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]
        env.update({**ANY_PORT, "LAB_HOME": str(tmp_path), "LAB_PROJECT": project, "LAB_DNS_PORT": str(port),
                    "LAB_INTERNET_SUBNET": str(internet), "LAB_VPC_SUBNET": str(vpc)})
        proc = subprocess.run([sys.executable, "-m", "lab", "up"], capture_output=True, text=True,
                              env=env, check=False, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert f"port {port} on 127.0.0.1 is in use by another program" in proc.stderr
    assert "LAB_DNS_PORT=" in proc.stderr and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        line for line in proc.stderr.splitlines() if "LAB_DNS_PORT" in line], proc.stderr  # one line
    assert _project_containers(docker_client, project) == []


def test_a_dns_server_that_fails_to_start_is_named_and_nothing_is_left(tmp_path, docker_client, monkeypatch):
    """PowerDNS refusing its config (here: a setting it does not know) ends `lab up` with the
    service and the fix named, and everything removed."""
    real = route53.configs

    def broken(settings, env, banner, generation):
        out = real(settings, env, banner, generation)
        conf = settings.build_dir / "dns" / "pdns.conf"
        out["dns"][conf] += b"no-such-setting=1\n"
        return out

    monkeypatch.setattr(route53, "configs", broken)
    internet, vpc = docker_env.free_subnets(docker_client, 2)
    project = f"mtlslab-dnsfail-{secrets.token_hex(3)}"
    settings = Settings.from_env(env=ANY_PORT, project=project, home=tmp_path,
                                 internet_subnet=internet, vpc_subnet=vpc)
    stack = Stack(settings)
    try:
        with pytest.raises(StackError) as caught:
            stack.up(UI(verbose=False))
    finally:
        leftovers = _project_containers(docker_client, project)
        if leftovers:
            stack.down()
    first = str(caught.value).splitlines()[0]
    assert "dns: exited" in first and "PowerDNS refused to start" in first and "lab images --rebuild" in first
    assert "no-such-setting" in str(caught.value)  # its log line says why
    assert leftovers == []
