"""The ALB with no healthy target, running: real HAProxy, real backends, its four listeners.

AWS: "If a target group contains only unhealthy registered targets, the load balancer routes
requests to all those targets, regardless of their health status" (ALB health checks,
docs/aws-parity.md "The ALB with no healthy target"). Two faults, in both modes:

- both backends failing their health checks but still serving (the checks sent to a closed
  port through the runtime API): LAB_SORRY=dns (the default) still serves every listener
  from the targets; LAB_SORRY=lb (the lab's shortcut) answers the sorry page;
- both backends stopped: with dns HAProxy reaches for the targets anyway and, nothing
  answering, answers 503 itself (its runtime API counts the failed connections), never the
  sorry page; with lb the sorry page answers.

The ALB alone is reloaded into the mode the session does not run, and back afterwards.
"""

import contextlib

import pytest

from lab import compare
from lab.dashboard.collect import parse_stat
from lab.designs import BACKEND_LISTENERS, BACKENDS
from lab.fault import Faults
from lab.wait import wait_for

DESIGNS = ("alb", "alb-mtls-verify", "alb-mtls-passthrough", "alb-before")
GROUPS = tuple("targets_" + d.replace("-", "_") for d in DESIGNS)   # one target group per listener
CHECKED = GROUPS[0]          # the one that checks; the other two track it
CHECK_PORT = BACKEND_LISTENERS["alb-headers"].port   # where the ALB's checks go (lab/render.py)
CLOSED_PORT = 1              # nothing listens there on a backend: every check fails (L4CON)
STATS = ("stot", "econ")     # sessions, and requests that failed to connect (HAProxy's show stat)


@contextlib.contextmanager
def alb_in(lab, mode: str):
    """The running lab with the ALB in LAB_SORRY=``mode`` (reloaded unless it is the session's)."""
    if lab.settings.sorry == mode:
        yield lab.stack
        return
    with lab.reloaded(("alb",), ready=True, sorry=mode, sorry_auto=False) as changed:
        yield changed


@pytest.fixture(scope="module", params=["dns", "lb"], ids=["sorry-dns", "sorry-lb"])
def alb(request, lab, docker_client):
    """The stack with the ALB in each mode in turn (pytest runs every test of a mode together)."""
    with alb_in(lab, request.param) as stack:
        yield stack


@pytest.fixture(scope="module")
def listeners(lab, docker_client):
    clients = compare.clients_for(lab.stack, docker_client)
    return {d: clients[d] for d in DESIGNS}


@pytest.fixture(scope="module")
def source(lab):
    return lab.settings.client_pool.users[4]


def counters(api) -> dict:
    """(backend, server) -> {stot, econ} from the ALB's `show stat`."""
    return {(r["pxname"], r["svname"]): {k: int(r.get(k) or 0) for k in STATS}
            for r in parse_stat(api.command("show stat")) if r.get("svname") not in ("FRONTEND", "BACKEND")}


def grew(before: dict, after: dict, backend: str, server: str, counter: str) -> int:
    return after[(backend, server)][counter] - before.get((backend, server), {counter: 0})[counter]


def every_target_down(api) -> None:
    wait_for(lambda: all(api.server_states(CHECKED).get(w) == "DOWN" for w in BACKENDS), 15,
             what=f"{', '.join(BACKENDS)} DOWN at the ALB")


def ask_each_listener(api, listeners, source) -> tuple[dict, dict, dict]:
    before = counters(api)
    answers = {d: listener.get("alice", source) for d, listener in listeners.items()}
    return answers, before, counters(api)


def assert_the_sorry_page(answers, before, after):
    """LAB_SORRY=lb: every listener answers the sorry page, from its target group's backup server."""
    for design, answer in answers.items():
        assert answer.status == 503 and answer.sorry and answer.backend == "sorry", (design, answer)
    for group in GROUPS:
        assert grew(before, after, group, "sorry", "stot") == 1, group
        assert (group + "_fail_open", "web1") not in after


def test_targets_failing_checks_but_serving_still_serve_when_the_alb_fails_open(
        alb, listeners, source):
    mode = alb.settings.sorry
    api = alb.runtime_api("alb")
    for web in BACKENDS:
        assert api.command(f"set server {CHECKED}/{web} check-port {CLOSED_PORT}").strip() == ""
    try:
        every_target_down(api)
        assert {api.server_states(g)[w] for g in GROUPS for w in BACKENDS} == {"DOWN"}  # the trackers too
        answers, before, after = ask_each_listener(api, listeners, source)
    finally:
        for web in BACKENDS:
            api.command(f"set server {CHECKED}/{web} check-port {CHECK_PORT}")
        api.wait_up(BACKENDS, timeout=30, backend=CHECKED)
    print(f"\nLAB_SORRY={mode}, checks failing: " + ", ".join(f"{d} {a} in {a.seconds} s" for d, a in answers.items()))
    if mode == "lb":
        assert_the_sorry_page(answers, before, after)
        return
    # as an AWS ALB: the unhealthy targets still get the requests, and they answer them
    for design, answer in answers.items():
        assert answer.backend in BACKENDS and not answer.sorry, (design, answer)
    assert answers["alb-mtls-verify"].status == answers["alb-mtls-passthrough"].status == answers["alb-before"].status == 200
    assert answers["alb"].status == 400  # mutual TLS off: the target itself refuses (no certificate)
    for group in GROUPS:
        assert sum(grew(before, after, group + "_fail_open", w, "stot") for w in BACKENDS) == 1, group
        assert (group, "sorry") not in after


def test_every_target_stopped_the_alb_fails_open_to_nothing_or_serves_the_sorry_page(
        alb, docker_client, listeners, source):
    mode = alb.settings.sorry
    api = alb.runtime_api("alb")
    faults = Faults(alb, docker_client)
    faults.inject("stop", "all")
    try:
        every_target_down(api)
        answers, before, after = ask_each_listener(api, listeners, source)
    finally:
        faults.restore("stop", "all")
        api.wait_up(BACKENDS, timeout=30, backend=CHECKED)
    print(f"\nLAB_SORRY={mode}, targets stopped: " + ", ".join(f"{d} {a} in {a.seconds} s" for d, a in answers.items()))
    if mode == "lb":
        assert_the_sorry_page(answers, before, after)
        return
    # HAProxy's own 503 once its connections to the (stopped) targets failed: not the sorry page
    for design, answer in answers.items():
        assert answer.status == 503 and not answer.sorry and answer.backend == "", (design, answer)
        assert "503 Service Unavailable" in str(answer.body), (design, answer.body)
    for group in GROUPS:
        assert sum(grew(before, after, group + "_fail_open", w, "econ") for w in BACKENDS) >= 1, group
        assert (group, "sorry") not in after
