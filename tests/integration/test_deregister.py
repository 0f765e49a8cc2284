"""`lab fault deregister`: an NLB target group's deregistration delay (research/nlb.md §4).

A long-lived connection from the host, held open through the NLB to web1 with keep-alive
requests, shows what happens to established connections; new connections show that a
deregistered target gets none at all, not even from a client the stick table pins to it
(HAProxy's `drain` would still send those: test_faults.py shows it). The delay is 5 s, set
through the CLI's settings; every wait below derives from it or from the health checks.
"""

import http.client
import json
import os
import time

import pytest

from lab import deregister, fault
from lab.client import Container, Host, request
from lab.containers import ClientContainer
from lab.credentials import Credentials

# Long enough for two `lab` commands (about 0.6 s each on the shared machine) to run before
# the deadline: the tests read the state and restore within the delay.
DELAY_S = 5.0
# The helper wakes at the deadline, then takes a lock and sends two runtime-API commands:
# "shortly after" is well within this on the shared 2-core machine.
CLOSE_BOUND_S = 2.0
POLL_S = 0.2  # the long-lived connection asks every POLL_S


def env(termination: str) -> dict:
    return {"LAB_DEREGISTRATION_DELAY": f"{DELAY_S:g}s", "LAB_DEREGISTRATION_CONNECTION_TERMINATION": termination}


class LongLived:
    """One TLS connection from the host through the NLB; it never reconnects by itself."""

    def __init__(self, certs_dir, port):
        ctx = Credentials(certs_dir, "alice").ssl_context()
        self.conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=5)
        self.conn.connect()
        self.sock = self.conn.sock
        self.conn.auto_open = 0  # a closed connection raises instead of opening a new one

    def ask(self) -> str:
        """The backend that answered on this connection (an OSError/HTTPException once closed)."""
        self.conn.request("GET", "/whoami")  # HTTP/1.1: keep-alive
        answer = self.conn.getresponse()
        body = answer.read()
        assert self.conn.sock is self.sock, "http.client opened another connection"
        return answer.getheader("X-Backend") or json.loads(body)["backend"]

    def close(self):
        self.conn.close()


@pytest.fixture
def faults(lab, docker_client):
    f = fault.Faults(lab.stack, docker_client)
    f.api.wait_up(timeout=ready_bound(lab.settings))
    yield f
    deregister.restore(lab.stack, ("web1",))  # whatever a failed test left
    f.api.wait_up(timeout=ready_bound(lab.settings))


def ready_bound(s) -> float:
    """Out of maintenance a server must pass `rise` checks (each up to inter + 1 s timeout)."""
    return s.check_rise * (s.check_inter_seconds + 1.0) + s.check_inter_seconds + 5.0


def on_web1(faults, lab) -> LongLived:
    """A long-lived connection that landed on web1 (round-robin decides: retry afresh)."""
    for _ in range(8):
        faults.api.clear_table()
        conn = LongLived(lab.certs_dir, lab.stack.nlb_port())
        if conn.ask() == "web1":
            return conn
        conn.close()
    pytest.fail("eight fresh connections never landed on web1")


def watch(conn: LongLived, until: float) -> list:
    """Ask on ``conn`` every POLL_S until ``until`` (epoch) or it fails: [(time, backend or error)]."""
    seen = []
    while time.time() < until:
        try:
            seen.append((time.time(), conn.ask()))
        except (OSError, http.client.HTTPException) as exc:
            seen.append((time.time(), f"error: {type(exc).__name__}"))
            break
        time.sleep(POLL_S)
    return seen


def status_row(lab_cli, backend="web1") -> dict:
    out = lab_cli("fault", "status", "--json")
    assert out.returncode == 0, out.stderr
    return {r["backend"]: r for r in json.loads(out.stdout)}.get(backend)


def newcomers(faults, lab) -> set:
    """Where fresh client addresses are balanced to (every one of them a new connection)."""
    via = Container(ClientContainer(faults.dc, lab.settings.project))
    return set(fault.pin_clients(faults, via, list(lab.settings.client_pool.users), 4).values())


def deregister_web1(lab_cli, termination: str) -> dict:
    out = lab_cli("fault", "deregister", "web1", env=env(termination))
    assert out.returncode == 0, out.stderr
    row = status_row(lab_cli)
    # the command has returned, the delay has not: the timer lives on without it
    assert row["state"] == "draining" and 0 < row["seconds_left"] <= DELAY_S, row
    assert row["termination"] is (termination == "on") and row["haproxy"] == "MAINT"
    return row


def test_deregistered_target_keeps_established_connections_past_the_delay(faults, lab, lab_cli):
    """Termination off (AWS's default): no new connections at once, the established one goes
    on through draining and after unused."""
    conn = on_web1(faults, lab)
    try:
        row = deregister_web1(lab_cli, "off")
        # at once: the host, pinned to web1 by the stick table, gets web2 on a new connection
        assert request(Host(lab.certs_dir), "alice", port=lab.stack.nlb_port()).served().backend == "web2"
        assert newcomers(faults, lab) == {"web2"}
        seen = watch(conn, row["deadline"] + CLOSE_BOUND_S)
        assert [b for _, b in seen] == ["web1"] * len(seen), seen
        assert seen[-1][0] > row["deadline"] + CLOSE_BOUND_S - 2 * POLL_S  # watched past the deadline
        after = status_row(lab_cli)
        assert after["state"] == "unused" and after["seconds_left"] == 0 and after["closed"] is None
        assert after["connections"] >= 1  # ours, still established
        assert conn.ask() == "web1"  # unused, and still answered
        text = lab_cli("status").stdout
        assert "deregistered targets" in text and "unused" in text
    finally:
        conn.close()
    out = lab_cli("fault", "restore", "deregister", "web1")
    assert out.returncode == 0, out.stderr
    faults.api.wait_up(("web1",), timeout=ready_bound(lab.settings))
    assert status_row(lab_cli) is None
    assert "web1" in newcomers(faults, lab)  # registered again: new connections reach it


def test_termination_closes_established_connections_shortly_after_the_delay(faults, lab, lab_cli):
    conn = on_web1(faults, lab)
    try:
        row = deregister_web1(lab_cli, "on")
        assert newcomers(faults, lab) == {"web2"}
        seen = watch(conn, row["deadline"] + CLOSE_BOUND_S + 1)
        answered = [(t, b) for t, b in seen if not b.startswith("error")]
        closed_at, why = seen[-1]
        assert why.startswith("error"), f"still open {CLOSE_BOUND_S + 1} s after the delay: {seen[-3:]}"
        # answered by web1 all through the delay (every answer before the first failure),
        # closed only after it, and shortly
        assert len(answered) >= 2 and {b for _, b in answered} == {"web1"}, seen
        assert row["deadline"] <= closed_at <= row["deadline"] + CLOSE_BOUND_S, (closed_at - row["deadline"], seen)
        print(f"\nclosed {closed_at - row['deadline']:.2f} s after the {DELAY_S:g} s delay, "
              f"{len(answered)} answers on it before")
        after = status_row(lab_cli)
        assert after["state"] == "unused" and after["closed"] >= 1 and after["connections"] == 0
    finally:
        conn.close()
    assert lab_cli("fault", "restore", "deregister", "web1").returncode == 0
    faults.api.wait_up(("web1",), timeout=ready_bound(lab.settings))
    assert "web1" in newcomers(faults, lab)


def test_restore_during_the_delay_cancels_the_timer(faults, lab, lab_cli):
    """Re-registered before the deadline, with termination on: nothing happens at the
    deadline (the helper is gone), the connection stays and web1 stays in service."""
    conn = on_web1(faults, lab)
    try:
        row = deregister_web1(lab_cli, "on")
        helper = deregister.load(lab.settings.build_dir / "deregister" / "web1.json").helper
        assert helper and os.path.exists(f"/proc/{helper}")  # the timer runs on its own
        assert lab_cli("fault", "restore", "deregister", "web1").returncode == 0
        assert time.time() < row["deadline"], "the restore came too late to test the cancel"
        seen = watch(conn, row["deadline"] + CLOSE_BOUND_S)
        assert [b for _, b in seen] == ["web1"] * len(seen), seen
        assert not os.path.exists(f"/proc/{helper}") or _zombie(helper)
        assert faults.api.server_states()["web1"] != "MAINT" and status_row(lab_cli) is None
    finally:
        conn.close()


def test_a_second_deregister_names_the_restore(faults, lab, lab_cli):
    first = lab_cli("fault", "deregister", "web1", env=env("off"))
    assert first.returncode == 0, first.stderr
    again = lab_cli("fault", "deregister", "web1", env=env("off"))
    assert again.returncode == 1
    assert "web1 is already deregistered (draining" in again.stderr
    assert "`lab fault restore deregister web1` re-registers it" in again.stderr
    assert lab_cli("fault", "restore", "deregister", "web1").returncode == 0


def _zombie(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z"
    except OSError:
        return True
