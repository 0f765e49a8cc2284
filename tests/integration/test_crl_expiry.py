"""An expired CRL: nginx then refuses every client, the load balancer's health checks
included (fail closed). The lab's answer is to never get there: `lab certs` (and `lab up`)
re-sign the CRL a week before its nextUpdate; `lab reload` loads it into a running lab."""

import datetime as dt

import pytest

from lab import certs, pki
from lab.client import Host, request
from lab.containers import compose_container
from lab.wait import wait_for


@pytest.fixture
def web2_with_stale_crl(lab, docker_client):
    trust = lab.settings.build_dir / "trust" / "crl.pem"
    saved = trust.read_bytes()
    now = pki.utcnow()
    stale = certs.crl_bundle(lab.settings.certs_dir, last_update=now - dt.timedelta(days=40),
                             next_update=now - dt.timedelta(days=10))
    web2 = compose_container(docker_client, lab.settings.project, "web2")

    def restore():
        trust.write_bytes(saved)
        _reload(web2)

    trust.write_bytes(stale)  # in place: web1 shares the folder but is not reloaded
    try:
        _reload(web2)
        yield restore
    finally:
        restore()


def _workers(container) -> set:
    """PIDs of nginx's worker processes in ``container``."""
    script = 'for p in /proc/[0-9]*; do case "$(tr "\\0" " " < $p/cmdline 2>/dev/null)" in ' \
             '"nginx: worker process"*) echo "${p#/proc/}";; esac; done'
    _, out = container.exec_run(["sh", "-c", script])
    return set(out.decode().split())


def _reload(container) -> None:
    """`nginx -s reload`, then wait until every worker of the old configuration has exited:
    until then an old worker may still take a connection (and answer with the old CRL)."""
    old = _workers(container)
    assert old, "no nginx worker found: nothing would be waited for"
    assert container.exec_run(["nginx", "-s", "reload", "-c", "/etc/nginx/lab/nginx.conf"])[0] == 0
    wait_for(lambda: (now := _workers(container)) and not now & old, 10, interval=0.1,
             what="the old nginx workers gone after the reload")


def direct(lab, backend, client="alice"):
    """One request straight to a backend's diagnostic listener."""
    return request(Host(lab.settings.certs_dir), client, port=lab.stack.direct_port(backend))


def test_expired_crl_refuses_every_client(lab, runtime_api, web2_with_stale_crl):
    verdict = direct(lab, "web2")  # the reload is complete: no old worker answers
    assert verdict.status == 400 and verdict.body["client_verify"] == "FAILED:CRL has expired"
    assert direct(lab, "web2", "bob").body["client_verify"] == "FAILED:CRL has expired"
    # the load balancer's own health checks are refused too: web2 is taken out of service
    wait_for(lambda: runtime_api.server_states()["web2"] == "DOWN", 10, what="web2 DOWN")
    # negative control: web1 was not reloaded and still accepts alice
    ok = direct(lab, "web1")
    assert ok.status == 200 and ok.body["client_verify"] == "SUCCESS"

    # a current CRL and a reload bring web2 back
    web2_with_stale_crl()
    assert direct(lab, "web2").status == 200
    runtime_api.wait_up(("web2",), timeout=10)
