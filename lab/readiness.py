"""Is every service of a running lab serving? Asked of the lab itself, not of Docker.

Docker's health checks `docker exec` a command in every container; at one a second in nine
containers they kept half a core busy at rest. The lab asks cheaper witnesses instead, that
cost the containers nothing when nobody asks:

- the backends and the sorry page: each load balancer's own health checks (its runtime API,
  on a UNIX socket: UP *and* a passed check, since HAProxy starts servers UP);
- the load balancers: their runtime API answers;
- the ALB's WAF and the passthrough verifier: a request through the ALB's listeners;
- the client: the file its entrypoint writes when its addresses are in place.

`lab up` waits on this, and `lab status` shows it. The compose file keeps slow Docker health
checks (every 60 s) for `docker ps`.
"""

from __future__ import annotations

import datetime as dt
import time

import docker.errors

from . import containers, route53
from .client import Host, request
from .designs import BACKENDS, BASE_SERVICES, DESIGN_SERVICES, LOAD_BALANCERS, SORRY
from .errors import LabError, StackError

PASSED = ("L4OK", "L6OK", "L7OK")
# Each load balancer's backend whose checks vouch for the targets (an ALB's other target
# groups follow its first one's checks: `track`); none for one that sends no health checks.
LB_BACKENDS = {lb.service: (lb.check_backend,) if lb.check_backend else () for lb in LOAD_BALANCERS.values()}


def expected(stack) -> list[str]:
    """The services this lab instance runs: the NLB and its targets, the client, and what
    the chosen designs add."""
    wanted = list(BASE_SERVICES)
    for design in stack.settings.designs:
        wanted += [s for s in DESIGN_SERVICES[design] if s not in wanted]
    return wanted


def check(stack, dc, known_ready: set | None = None) -> dict[str, str]:
    """One look at every expected service: service -> "" when it serves, else why not.
    A reason starting with "held:" is a server the operator put in MAINT or DRAIN: it
    serves, and does not keep `lab up` waiting.

    ``known_ready``: services already seen ready whose costlier probe (a `docker exec`)
    need not run again.
    """
    known_ready = known_ready or set()
    rows = {r.get("Service"): r for r in stack.compose.ps()}
    reasons = {svc: "" for svc in expected(stack)}
    for svc in reasons:
        row = rows.get(svc, {})
        if row.get("State") != "running":
            reasons[svc] = f"{row.get('State') or 'not created'}" + (
                f" (exit code {row['ExitCode']})" if row.get("State") == "exited" else "")
    started = _started(dc, stack.settings.project)
    vouched: set = set()
    for lb, backends in LB_BACKENDS.items():
        if lb not in reasons or reasons[lb]:
            continue
        try:
            api = stack.runtime_api(lb, timeout=1)
            checks = {backend: api.server_checks(backend) for backend in backends}
            if not backends:
                api.command("show info")  # it serves when its runtime API answers
        except StackError as exc:
            reasons[lb] = f"its runtime API does not answer yet ({exc})"
            continue
        for backend, servers in checks.items():
            if not servers:
                reasons[lb] = f"backend {backend} has no servers"
            for server, (status, last) in servers.items():
                if server not in reasons or reasons[server]:
                    continue
                vouched.add(server)
                if status.startswith(("MAINT", "DRAIN")):
                    reasons[server] = f"held: {status} at {lb} (`lab fault restore`)"
                elif status != "UP" or last not in PASSED:
                    reasons[server] = f"{status} at {lb} (last check {last or '-'})"
                elif _newer_than_checks(stack, started, server, lb):
                    reasons[server] = f"restarted; waiting for {lb} to check the new container"
    # the sorry page is checked only where a load balancer holds it as a backup (LAB_SORRY=lb)
    for server in (*BACKENDS, *([SORRY.name] if stack.settings.sorry == "lb" or SORRY.name in vouched else [])):
        if server in reasons and not reasons[server] and server not in vouched:
            reasons[server] = "not checked: no load balancer answers"
    if "client" in reasons and not reasons["client"] and "client" not in known_ready:
        try:
            container = containers.compose_container(dc, stack.settings.project, "client")
            if container.exec_run(["test", "-f", "/run/lab-client-ready"])[0] != 0:
                reasons["client"] = "still adding its source addresses"
        except (docker.errors.APIError, LabError) as exc:
            reasons["client"] = f"cannot be asked ({exc})"
    for svc, why in route53.ready(stack, reasons).items():
        reasons[svc] = why
    for lb in LOAD_BALANCERS.values():
        if lb.companions and lb.service in reasons and not reasons[lb.service]:
            for svc, why in _through(stack, lb, reasons).items():
                if not reasons.get(svc):  # an exited service keeps its own, better reason
                    reasons[svc] = why
    return reasons


def _started(dc, project: str) -> dict:
    """service -> when its container started (Docker's clock, UTC)."""
    found = {}
    try:
        for container in dc.containers.list(filters={"label": f"com.docker.compose.project={project}"}):
            stamp = container.attrs.get("State", {}).get("StartedAt", "")
            try:  # "2026-11-29T22:01:02.123456789Z": keep microseconds
                found[container.labels.get("com.docker.compose.service")] = dt.datetime.strptime(
                    stamp[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.timezone.utc)
            except ValueError:
                continue
    except docker.errors.APIError:
        pass
    return found


def _newer_than_checks(stack, started: dict, server: str, lb: str) -> bool:
    """A target recreated while its load balancer kept running: the check HAProxy passed may
    have been the old container's, until one full check round has run since the new one
    started."""
    if server not in started or lb not in started or started[server] <= started[lb]:
        return False
    round_s = stack.settings.check_round_seconds(server)
    return (dt.datetime.now(dt.timezone.utc) - started[server]).total_seconds() < round_s


def _through(stack, lb, reasons: dict) -> dict:
    """A load balancer's companions, asked through its listeners: its WAF (every request
    crosses it) and the chain verifier (its passthrough listener asks it). Asked only when
    the targets serve, so a missing target is not blamed on them."""
    found = {}
    if any(reasons.get(s) for s in BACKENDS):
        return found
    host = Host(stack.settings.certs_dir)
    first = lb.designs[0].name
    if lb.waf:
        waf = lb.waf_service
        try:
            answer = request(host, "alice", port=stack.design_port(first), path="/healthz", timeout=2)
            if not answer.status:
                found[waf] = f"no answer through {first} ({answer.error})"
            elif answer.headers.get("x-backend") not in BACKENDS:
                found[waf] = f"{first} answered {answer.status} without reaching a target"
        except LabError as exc:
            found[waf] = f"no answer through {first} ({type(exc).__name__})"
    chain = [d.name for d in lb.designs if d.mode == "chain"]
    if lb.verifier and chain and "verifier" in reasons and not reasons["verifier"] and not found:
        try:
            answer = request(host, "alice", port=stack.design_port(chain[0]), timeout=2)
            if not answer.status:
                found["verifier"] = f"no answer through {chain[0]} ({answer.error})"
            elif answer.status != 200:
                found["verifier"] = f"a valid chain got {answer.status} through {chain[0]}"
        except LabError as exc:
            found["verifier"] = f"no answer through {chain[0]} ({type(exc).__name__})"
    return found


def wait(stack, dc, timeout: float, on_line=None) -> None:
    """Wait until every expected service serves.

    Raises:
        NotReady: naming each service that does not, and why.
    """
    deadline = time.monotonic() + timeout
    ready: set = set()
    reasons: dict = {}
    while True:
        reasons = check(stack, dc, ready)
        ready = {svc for svc, why in reasons.items() if not why or why.startswith("held:")}
        waiting = {svc: why for svc, why in reasons.items() if svc not in ready}
        if not waiting:
            return
        exited = {svc: why for svc, why in waiting.items() if why.startswith(("exited", "dead"))}
        if exited or time.monotonic() > deadline:
            raise NotReady(exited or waiting)
        if on_line:
            on_line(f"waiting for {', '.join(sorted(waiting))}: {'; '.join(sorted(set(waiting.values())))[:120]}")
        time.sleep(0.25)


class NotReady(StackError):
    """Services that did not come to serve; ``reasons`` maps each to why."""

    def __init__(self, reasons: dict):
        self.reasons = reasons
        super().__init__("not serving: " + "; ".join(f"{svc}: {why}" for svc, why in sorted(reasons.items())))
