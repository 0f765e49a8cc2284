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

import time

import requests

from . import probe
from .designs import DESIGN_SERVICES
from .errors import StackError

BASE_SERVICES = ("nlb", "web1", "web2", "sorry", "client")
PASSED = ("L4OK", "L6OK", "L7OK")
# Each load balancer's backends, whose servers are the lab's web services.
LB_BACKENDS = {
    "nlb": ("web",),
    "nlb-tls": ("web",),
    "alb": ("targets_alb",),  # the ALB's other target groups follow its checks (`track`)
}


def expected(stack) -> list[str]:
    """The services this lab instance runs: the NLB and its targets, the client, and what
    the chosen designs add."""
    wanted = list(BASE_SERVICES)
    for design in stack.settings.designs:
        wanted += [s for s in DESIGN_SERVICES[design] if s not in wanted]
    return wanted


def check(stack, dc, known_ready: set | None = None) -> dict[str, str]:
    """One look at every expected service: service -> "" when it serves, else why not.

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
    for lb, backends in LB_BACKENDS.items():
        if lb not in reasons or reasons[lb]:
            continue
        try:
            api = stack.runtime_api(lb, timeout=1)
            checks = {backend: api.server_checks(backend) for backend in backends}
        except StackError:
            reasons[lb] = "its runtime API does not answer yet"
            continue
        for backend, servers in checks.items():
            if not servers:
                reasons[lb] = f"backend {backend} has no servers"
            for server, (status, last) in servers.items():
                if server in reasons and not reasons[server] and (status != "UP" or last not in PASSED):
                    reasons[server] = f"{status} at {lb} (last check {last or '-'})"
    if "client" in reasons and not reasons["client"] and "client" not in known_ready:
        container = probe.compose_container(dc, stack.settings.project, "client")
        if container.exec_run(["test", "-f", "/run/lab-client-ready"])[0] != 0:
            reasons["client"] = "still adding its source addresses"
    if "alb" in reasons and not reasons["alb"]:
        reasons.update(_through_the_alb(stack, reasons))
    return reasons


def _through_the_alb(stack, reasons: dict) -> dict:
    """The WAF (every ALB request crosses it) and the verifier (passthrough asks it)."""
    found = {}
    certs_dir = stack.settings.certs_dir
    try:
        with probe.session(certs_dir, None) as s:
            answer = s.get(f"https://localhost:{stack.design_port('alb')}/healthz", timeout=2)
        if not answer.headers.get("X-Backend"):
            found["alb-waf"] = f"the ALB answered {answer.status_code} without reaching a target"
    except (requests.RequestException, StackError) as exc:
        found["alb-waf"] = f"no answer through the ALB ({type(exc).__name__})"
    if "verifier" in reasons and not reasons["verifier"] and not found:
        try:
            with probe.session(certs_dir, "alice") as s:
                answer = s.get(f"https://localhost:{stack.design_port('alb-mtls-passthrough')}/whoami",
                               timeout=2)
            if answer.status_code != 200:
                found["verifier"] = f"a valid chain got {answer.status_code} through ALB passthrough"
        except (requests.RequestException, StackError) as exc:
            found["verifier"] = f"no answer through ALB passthrough ({type(exc).__name__})"
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
        ready = {svc for svc, why in reasons.items() if not why}
        waiting = {svc: why for svc, why in reasons.items() if why}
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
