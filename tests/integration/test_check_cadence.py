"""The health checks as they cross the vpc at rest: each checking load balancer opens a
connection to each target about every LAB_CHECK_INTER (2 s) and to the sorry page about every
LAB_SORRY_CHECK_INTER (10 s) where it has one (LAB_SORRY=lb; with dns they fail open); CloudFront
opens none. Counted with tcpdump on the vpc bridge
(connection openings: SYN without ACK). With the old cadence (1 s for everyone) the sorry
page got twelve checks per load balancer in this window and each target twelve."""

import collections
import re
import shutil
import subprocess

import pytest

WINDOW_S = 12
CHECKING = ("nlb", "alb", "nlb-tls")
SYN = re.compile(r" IP (\d+\.\d+\.\d+\.\d+)\.\d+ > (\d+\.\d+\.\d+\.\d+)\.\d+: Flags \[S\]")


def openings(bridge: str) -> collections.Counter:
    """(source, destination) -> connections opened on ``bridge`` during WINDOW_S."""
    out = subprocess.run(
        ["timeout", str(WINDOW_S), "tcpdump", "-l", "-n", "-i", bridge,
         "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"],
        capture_output=True, text=True, check=False)
    assert "listening on" in out.stderr, out.stderr  # it did capture
    return collections.Counter(m.groups() for m in map(SYN.search, out.stdout.splitlines()) if m)


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump (.ci/run installs it)")
def test_targets_every_inter_the_sorry_page_every_sorry_inter_cloudfront_never(lab, docker_client, runtime_api):
    runtime_api.wait_up(("web1", "web2"), timeout=30)  # at rest: nothing in doubt, no fastinter
    s = lab.stack.settings
    vpc = docker_client.networks.get(f"{s.project}_vpc")
    seen = openings(f"br-{vpc.id[:12]}")
    for lb in CHECKING:
        lb_ip = s.lb_ips(lb)[1]
        for web in ("web1", "web2"):
            # 12 s / 2 s: 6, give or take one at each end of the window (1 s: 12)
            assert 5 <= seen[(lb_ip, s.backend_ip(web))] <= 7, (lb, web, seen)
        if s.sorry == "lb":
            # 12 s / 10 s: one or two (1 s: 12); at least one, so it is still checked
            assert 1 <= seen[(lb_ip, s.sorry_ip)] <= 2, (lb, seen)
        else:  # LAB_SORRY=dns: no load balancer has a sorry server to check (they fail open)
            assert seen[(lb_ip, s.sorry_ip)] == 0, (lb, seen)
    cloudfront_ip = s.lb_ips("cloudfront")[1]
    assert not [pair for pair in seen if pair[0] == cloudfront_ip], seen
