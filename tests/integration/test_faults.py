"""Faults under steady load from several client addresses (lab fault measure).

What the lab promises, with health checks every 2 s while a target is UP and every 500 ms once
one failed (fastinter), fall 2, rise 2, check timeout 1 s:
- HAProxy marks a dead backend DOWN within inter + fall x timeout + (fall - 1) x fastinter
  = 4.5 s (Settings.detection_bound_seconds), inside the documented 5 s;
- requests pinned to it in that window are retried and redispatched (retries 2,
  option redispatch), so few or none fail: at most every request its clients sent
  during the detection window;
- its clients are re-pinned to the survivor; then, with LAB_NLB_STICKINESS=aws (the
  default), the whole stick table is emptied at each target health change or (de)registration,
  as AWS says an NLB might, so everyone is balanced afresh; with `haproxy` the re-pinned
  clients stay on the survivor after recovery (HAProxy overwrites the entry);
- with every backend down the sorry page answers within that bound and is never pinned
  (LAB_SORRY=lb); with LAB_SORRY=dns (the default) the NLB fails open instead.
"""

import contextlib
import http.client
import re
import time

import pytest

from lab import fault
from lab.client import Container, request
from lab.containers import ClientContainer, compose_container
from lab.credentials import Credentials
from lab.wait import wait_for

DETECT_BOUND_S = 5.0  # the documented bound (docs/reliability.md); the defaults' is 4.5 s
RATE = 5
OUTAGE = 4.5


@pytest.fixture(scope="module")
def faults(lab, docker_client):
    return fault.Faults(lab.stack, docker_client)


@contextlib.contextmanager
def stickiness(lab, docker_client, mode: str):
    """Run the block with LAB_NLB_STICKINESS=``mode`` (the nlb reloaded), then go back to the
    session's setting (reloaded again)."""
    from lab import readiness

    s = lab.settings
    if mode == s.nlb_stickiness:
        yield
        return
    changed = type(lab.stack)(s.with_(nlb_stickiness=mode))
    changed.reload(dc=docker_client, services=("nlb",))
    try:
        readiness.wait(changed, docker_client, timeout=15)
        yield
    finally:
        lab.stack.reload(dc=docker_client, services=("nlb",))
        readiness.wait(lab.stack, docker_client, timeout=15)


def resets(lab, docker_client) -> list[str]:
    """The stick-table resets the nlb has logged so far (haproxy/stick-reset.lua.j2)."""
    logs = compose_container(docker_client, lab.settings.project, "nlb").logs().decode(errors="replace")
    return [line for line in logs.splitlines() if "stick table web reset:" in line]


SETTLE_S = 0.5  # the reset runs right after the server event, in HAProxy's own event loop


def run(faults, kind, target, pool, clients=4):
    report = fault.measure(faults, kind, target, sources=pool, clients=clients, rate=RATE, fault_at=0.8,
                           restore_at=0.8 + OUTAGE, duration=OUTAGE + 1.5)
    print(f"\n{kind} {target}: {report['requests']} requests, {report['failed']} failed "
          f"{report['failed_by_kind']}, sorry {report['sorry_page']}, detected {report['detected_after_s']}, "
          f"back up {report['back_up_after_s']}, max latency {report['latency_s']['max']} s")
    # every request curl was asked to send is accounted for, one outcome each
    assert report["requests"] == clients * int(RATE * (OUTAGE + 1.5))
    assert len(report["pinned_before"]) == clients
    return report


@pytest.mark.parametrize("kind, mode", [
    ("stop", "aws"), ("kill", "aws"), ("pause", "aws"), ("disconnect", "aws"), ("stop", "haproxy")])
def test_backend_dies_under_load(faults, lab, docker_client, kind, mode):
    with stickiness(lab, docker_client, mode):
        logged = len(resets(lab, docker_client))
        r = run(faults, kind, "web1", lab.settings.client_extra_ips)
        new_resets = resets(lab, docker_client)[logged:]
    sources = list(r["pinned_before"])
    pinned = [src for src, b in r["pinned_before"].items() if b == "web1"]
    assert pinned, f"round-robin pinned nobody to web1 ({r['pinned_before']}): nothing was tested"
    # detected within the documented bound, and back after the undo
    assert 0 < r["detected_after_s"]["web1"] <= DETECT_BOUND_S
    assert r["back_up_after_s"]["web1"] is not None
    # failures are bounded by what web1's clients sent while HAProxy had not yet noticed
    assert r["failed"] <= len(pinned) * RATE * DETECT_BOUND_S
    assert r["sorry_page"] == 0  # web2 was up all along
    # web1's clients moved to web2; everyone else never moved while web1 was away
    for src in pinned:
        assert r["path_per_source"][src][:2] == ["web1", "web2"]
    for src in set(sources) - set(pinned):
        assert r["path_per_source"][src] == ["web2"]
    for src in sources:
        assert r["pinned_after"][src] == r["stick_table"][src]
    if mode == "aws":
        # the table was emptied when web1 went DOWN and again when it came back UP
        assert [line.split("reset: ")[1] for line in new_resets] == [
            "SERVER_STATE web1 RUNNING -> STOPPED", "SERVER_STATE web1 STOPPED -> RUNNING"], new_resets
    else:
        # HAProxy re-pins: web1's clients stay on web2 once web1 is back, and nothing was reset
        assert new_resets == []
        assert {r["pinned_after"][src] for src in sources} == {"web2"}


@pytest.mark.parametrize("mode", ["aws", "haproxy"])
def test_a_target_health_change_resets_every_pin_with_aws_only(faults, lab, docker_client, runtime_api, mode):
    """AWS: "The load balancer might reset the sticky sessions for a target group if the health
    state of any of its targets changes" (docs/aws-parity.md). No request between a change and
    the look at the table: what is gone was reset, not overwritten."""
    via = Container(ClientContainer(faults.dc, lab.settings.project))
    with stickiness(lab, docker_client, mode):
        pins = fault.pin_clients(faults, via, lab.settings.client_extra_ips, 8)
        on_web1 = [src for src, b in pins.items() if b == "web1"]
        assert on_web1 and pins.items() <= runtime_api.stick_table().items()  # the positive control
        faults.inject("stop", "web1")
        try:
            wait_for(lambda: runtime_api.server_states()["web1"] == "DOWN", 10, what="web1 DOWN")
            time.sleep(SETTLE_S)
            while_down = runtime_api.stick_table()
            moved = {src: request(via, "alice", source=src).backend for src in pins}
        finally:
            faults.restore("stop", "web1")
        runtime_api.wait_up(("web1",), timeout=30)
        time.sleep(SETTLE_S)
        back_up = runtime_api.stick_table()
        after = {src: request(via, "alice", source=src).backend for src in pins}
    assert set(moved.values()) == {"web2"}  # in both modes, web1's clients go to the survivor
    if mode == "aws":
        assert not set(pins) & set(while_down), while_down   # every pin gone, web2's too
        assert not set(pins) & set(back_up), back_up         # and again once web1 was back
        assert set(after.values()) == {"web1", "web2"}, after  # everyone balanced afresh
    else:
        assert pins.items() <= while_down.items()  # kept (web1's still name web1 until a request)
        assert {src: back_up.get(src) for src in pins} == {src: "web2" for src in pins}
        assert after == {src: "web2" for src in pins}  # re-pinned clients stay on web2


@pytest.mark.parametrize("mode", ["aws", "haproxy"])
def test_deregistering_and_registering_a_target_resets_the_pins_with_aws_only(faults, lab, docker_client,
                                                                               runtime_api, mode):
    """AWS: "... or if you register or deregister targets with the target group": the runtime
    API's maintenance (deregistered) and ready (registered). The sorry page is no target: its
    changes reset nothing (the negative control of the filter)."""
    via = Container(ClientContainer(faults.dc, lab.settings.project))
    with stickiness(lab, docker_client, mode):
        pins = fault.pin_clients(faults, via, lab.settings.client_extra_ips, 6)
        for state in ("maint", "ready") if lab.settings.sorry == "lb" else ():  # dns: no sorry server
            faults.api.command(f"set server web/sorry state {state}")
        time.sleep(SETTLE_S)
        after_sorry = runtime_api.stick_table()
        faults.inject("maint", "web1")
        try:
            time.sleep(SETTLE_S)
            deregistered = runtime_api.stick_table()
            repinned = {src: request(via, "alice", source=src).backend for src in pins}
        finally:
            faults.restore("maint", "web1")
        time.sleep(SETTLE_S)
        registered = runtime_api.stick_table()
        runtime_api.wait_up(("web1",), timeout=15)
    assert pins.items() <= after_sorry.items()  # both modes: the sorry page's changes keep every pin
    assert set(repinned.values()) == {"web2"}
    if mode == "aws":
        assert not set(pins) & set(deregistered), deregistered
        assert not set(pins) & set(registered), registered
    else:
        assert pins.items() <= deregistered.items()
        assert {src: registered.get(src) for src in pins} == repinned


@pytest.mark.parametrize("mode", ["aws", "haproxy"])
def test_maint_moves_pinned_clients_drain_keeps_them_with_haproxy_only(faults, lab, docker_client, mode):
    """HAProxy's drain honours persistence; with `aws`, drain is a deregistration: the pins are
    reset and a draining target takes no new client, so its clients move too."""
    s = lab.settings
    via = Container(ClientContainer(faults.dc, s.project))
    with stickiness(lab, docker_client, mode):
        pins = fault.pin_clients(faults, via, s.client_extra_ips[:-1], 4)
        on_web1 = [src for src, b in pins.items() if b == "web1"]
        assert on_web1, f"nobody pinned to web1 ({pins}): nothing to test"
        newcomer = s.client_extra_ips[-1]  # never sent a request: not pinned
        faults.inject("drain", "web1")
        try:
            time.sleep(SETTLE_S)
            drained = {request(via, "alice", source=src).backend for src in on_web1}
            # drain: no new clients in either mode
            assert request(via, "alice", source=newcomer).backend == "web2"
        finally:
            faults.restore("drain", "web1")
        faults.inject("maint", "web1")
        try:
            # maintenance: no traffic at all, pinned clients are sent elsewhere
            assert {request(via, "alice", source=src).backend for src in on_web1} == {"web2"}
        finally:
            faults.restore("maint", "web1")
        faults.api.wait_up(("web1",), timeout=10)
    # haproxy: pinned ones stay on a draining server (persistence is honoured)
    assert drained == ({"web2"} if mode == "aws" else {"web1"})


def test_every_backend_down_gives_the_sorry_page_and_it_is_never_pinned(faults, lab):
    """LAB_SORRY=lb: the load balancer's backup server (with dns the next test, and the DNS
    failover in test_dns_failover.py)."""
    if lab.settings.sorry != "lb":
        pytest.skip("LAB_SORRY=lb only: with dns the NLB has no sorry page (next test)")
    r = run(faults, "stop", "all", lab.settings.client_extra_ips)
    sources = list(r["pinned_before"])
    assert r["sorry_page"] > 0
    assert 0 < r["host_first_sorry_after_s"] <= DETECT_BOUND_S + 1
    assert not r["sorry_in_stick_table"]
    for src in sources:
        assert "sorry" in r["path_per_source"][src]
        assert r["pinned_after"][src] in ("web1", "web2")  # failed back, not stuck on sorry
    assert r["host_back_on_a_backend_after_s"] is not None


def test_every_backend_down_the_nlb_fails_open_and_its_clients_come_back(faults, lab):
    """LAB_SORRY=dns (the default): as an AWS NLB, with no healthy target it sends to all
    targets anyway, so its clients get errors, never a sorry page from it; the sorry page
    comes from DNS (test_dns_failover.py)."""
    if lab.settings.sorry != "dns":
        pytest.skip("LAB_SORRY=dns only: with lb the backup server answers (previous test)")
    r = run(faults, "stop", "all", lab.settings.client_extra_ips)
    assert r["sorry_page"] == 0 and r["failed"] > 0, r["failed_by_kind"]
    assert r["host_first_sorry_after_s"] is None
    for src in r["pinned_before"]:
        assert r["pinned_after"][src] in ("web1", "web2")
    assert r["host_back_on_a_backend_after_s"] is not None


def test_reload_under_load_loses_nothing(faults, lab, docker_client):
    logged = len(resets(lab, docker_client))
    r = run(faults, "reload", "web1", lab.settings.client_extra_ips)
    assert r["failed"] == 0 and r["sorry_page"] == 0
    # HAProxy 3.0 hands the stick table to the new worker (docs/reliability.md, "Reloads and
    # the stick table"): nobody changes backend. Round-robin could re-pin a client where it
    # was by chance; the test below compares the tables with no traffic in between.
    why = {"resets during the run": resets(lab, docker_client)[logged:], "paths": r["path_per_source"],
           "table after": r["stick_table"]}
    for src, backend in r["pinned_before"].items():
        assert r["path_per_source"][src] == [backend], why
        assert r["pinned_after"][src] == backend == r["stick_table"][src]


def test_reload_hands_the_stick_table_to_the_new_worker(faults, lab, docker_client, runtime_api):
    via = Container(ClientContainer(faults.dc, lab.settings.project))
    pins = fault.pin_clients(faults, via, lab.settings.client_extra_ips, 8)
    before, old_worker = runtime_api.stick_table(), _worker_pid(runtime_api)
    logged = len(resets(lab, docker_client))
    # the positive control: the table holds what the requests pinned (and any spare address
    # pin_clients tried while evening out the backends)
    assert len(pins) == 8 and pins.items() <= before.items()
    faults.inject("reload", "web1")
    wait_for(lambda: _worker_pid(runtime_api) != old_worker, 10, what="the new worker")
    # No request since the reload: whatever the new worker holds came from the old one through
    # the local peer. The push takes a moment; HAProxy 2.6 often left the table empty for good.
    deadline = time.monotonic() + 5
    while runtime_api.stick_table() != before and time.monotonic() < deadline:
        time.sleep(0.25)
    after = runtime_api.stick_table()
    assert after == before, f"{len(before)} entries before the reload, {len(after)} after"
    # a reload is no target health change: LAB_NLB_STICKINESS=aws reset nothing
    assert resets(lab, docker_client)[logged:] == []


def _worker_pid(api) -> str:
    return re.search(r"^Pid: (\d+)", api.command("show info"), re.M).group(1)


def test_reload_with_a_config_change_keeps_an_established_connection(lab, docker_client, runtime_api):
    s = lab.settings
    ctx = Credentials(s.certs_dir, "alice").ssl_context()
    conn = http.client.HTTPSConnection("localhost", lab.stack.nlb_port(), context=ctx, timeout=5)
    try:
        conn.request("GET", "/whoami")
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        changed = type(lab.stack)(s.with_(stick_expire="20m"))  # a real config change
        changed.reload(dc=docker_client, services=("nlb",))
        wait_for(lambda: _table_expiry_ms(runtime_api) <= 20 * 60 * 1000, 10, what="new config active")
        conn.request("GET", "/whoami")
        second = conn.getresponse()
        second.read()
        assert (first.status, second.status) == (200, 200)
        assert conn.sock is sock  # the same TCP connection, through the old worker
    finally:
        conn.close()
        type(lab.stack)(s).reload(dc=docker_client, services=("nlb",))


def _table_expiry_ms(api) -> int:
    """Expiry of a fresh entry in the current process's table (new entries get the new value)."""
    api.command("set table web key 192.0.2.250")
    time.sleep(0.05)
    for line in api.command("show table web").splitlines():
        if "key=192.0.2.250" in line:
            api.command("clear table web key 192.0.2.250")
            return int(line.split("exp=")[1].split()[0])
    return 1 << 40


def test_readiness_names_what_does_not_serve_and_why(faults, lab, docker_client):
    """`lab up` and `lab status` ask the lab, not Docker: a stopped backend is named with its
    state, a held one (maint) does not keep `lab up` waiting, and both come back."""
    from lab import readiness

    stack = lab.stack
    # negative control: all serve (after an earlier test's reload, HAProxy's new worker has
    # not checked anything yet: "UP ... (last check INI)" is not serving, for a second)
    readiness.wait(stack, docker_client, timeout=15)
    assert set(readiness.check(stack, docker_client).values()) == {""}
    faults.inject("maint", "web2")
    try:
        reasons = readiness.check(stack, docker_client)
        assert reasons["web2"].startswith("held: MAINT at nlb")
        readiness.wait(stack, docker_client, timeout=5)  # held is not waited for
    finally:
        faults.restore("maint", "web2")
    readiness.wait(stack, docker_client, timeout=15)  # out of maint, web2 must pass `rise` checks again
    faults.inject("stop", "web1")
    try:
        reasons = readiness.check(stack, docker_client)
        assert reasons["web1"].startswith("exited"), reasons
        assert {svc for svc, why in reasons.items() if why} == {"web1"}
    finally:
        faults.restore("stop", "web1")
    readiness.wait(stack, docker_client, timeout=30)
    assert set(readiness.check(stack, docker_client).values()) == {""}


@pytest.mark.parametrize("mode, seen", [
    ("aws", "web1's return emptied the table"),
    ("haproxy", "HAProxy kept every user on web2 after web1 came back")])
def test_the_nat_stickiness_demo_shows_the_running_mode(lab, docker_client, lab_cli, mode, seen):
    """The demo reads the mode from the running NLB, not from its caller's settings."""
    other = "haproxy" if mode == "aws" else "aws"
    with stickiness(lab, docker_client, mode):
        proc = lab_cli("demo", "nat-stickiness", env={"LAB_NLB_STICKINESS": other})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert f"(LAB_NLB_STICKINESS={mode})" in proc.stdout and seen in proc.stdout
    assert "claim observed" in proc.stdout and "NOT seen" not in proc.stdout
