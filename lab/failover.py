"""DNS failover and failback, measured: stop both backends, watch two clients of www.lab.test
go to the sorry site, start the backends, watch them come back.

- the fresh client resolves at every request (curl in the client container, through Docker's
  resolver to the lab's DNS server: nothing caches);
- the cached client holds an answer for its TTL, as a caching resolver does: it resolves
  (from this machine, at the published DNS port), then connects to that address until the TTL
  runs out (curl --resolve), then resolves again. It resolves just before each change, so it
  holds a full TTL of the old answer: the worst case.

Bounds (docs/aws-parity.md "DNS failover"), with HAProxy's checks every `inter`, `fall`/`rise`
in a row, `timeout check` 1 s, and PowerDNS's checker every `interval` (LAB_CHECK_INTER rounded up):

    load balancer sees no target  <= (fall + 1) x (inter + 1 s)
    DNS answers the sorry site    <= that + interval + 1 s (the check's timeout)
    cached client follows         <= that + TTL, and not before TTL - its answer's age
"""

from __future__ import annotations

import time

from . import route53
from .designs import BACKENDS, DESIGNS, LOAD_BALANCERS
from .errors import LabError
from .client import Container, request
from .containers import ClientContainer
from .fault import Faults

PROBE_TIMEOUT_S = 2.0
CHECK_TIMEOUT_S = 1.0  # HAProxy's `timeout check`, and each ifurlextup check's timeout
START_ALLOWANCE_S = 10.0  # `docker compose start` of two nginx containers on a busy 2-core machine
ALB_DESIGN = "alb-mtls-verify"  # the ALB seen in the demo beside the NLB (when it runs)


def bounds(settings) -> dict:
    """The upper bounds (seconds) the measurement is held to, from the settings."""
    inter, ttl = settings.check_inter_seconds, settings.dns_ttl
    interval = route53.health_interval(settings)
    down = (settings.check_fall + 1) * (inter + CHECK_TIMEOUT_S)
    up = START_ALLOWANCE_S + (settings.check_rise + 1) * (inter + CHECK_TIMEOUT_S)
    dns = interval + CHECK_TIMEOUT_S + PROBE_TIMEOUT_S  # one checker round, and one probe's own time
    return {"failover_fresh": down + dns, "failover_cached": down + dns + ttl,
            "failback_fresh": up + dns, "failback_cached": up + dns + ttl, "ttl": ttl}


class CachedClient(route53.CachedAnswer):
    """A client that keeps the DNS answer for its TTL (a caching resolver's behaviour)."""

    def __init__(self, via: Container, dns_port: int):
        super().__init__(dns_port)
        self.via = via

    def get(self):
        return request(self.via, "alice", path="/whoami", address=self.current(), timeout=PROBE_TIMEOUT_S)


def _kind(answer) -> str:
    """What a probe got: "served" (a backend), "sorry site" (the cdn), "sorry in the LB" (the
    backup server, LAB_SORRY=lb) or "error" (no HTTP answer: the NLB failed open)."""
    if answer.sorry:
        return "sorry site" if answer.backend == route53.CDN.name else "sorry in the LB"
    return "served" if answer.ok else "error"


def sorry_kind(settings) -> str:
    """What a client gets with every target down, in this mode."""
    return "sorry site" if settings.sorry == "dns" else "sorry in the LB"


def _watch(stack, clients: dict, want: str, deadline_s: float, started: float) -> dict:
    """Probe every client until each got ``want``: name -> seconds after ``started`` (None: never),
    with the answers the DNS server gave along the way and what each client saw before."""
    port = route53.host_port(stack)
    first = {name: None for name in clients}
    seen = {name: {} for name in clients}
    dns_flip, answers = None, set()
    want_ip = stack.settings.lb_ips(route53.PRIMARY)[0] if want != "sorry site" else route53.cdn_ip(stack.settings)
    while time.monotonic() - started < deadline_s and None in first.values():
        answer = route53.resolve(port)[0]
        answers.update(answer)
        if dns_flip is None and answer == [want_ip]:
            dns_flip = round(time.monotonic() - started, 2)
        for name, probe in clients.items():
            if first[name] is not None:
                continue
            kind = _kind(probe())
            seen[name][kind] = seen[name].get(kind, 0) + 1
            if kind == want:
                first[name] = round(time.monotonic() - started, 2)
    return {"clients": first, "dns_answer_after_s": dns_flip, "seen": seen, "dns_answers": sorted(answers)}


def measure(stack, dc, on_line=None, during=None) -> dict:
    """Stop both backends, wait for both clients to reach the sorry page, start the backends,
    wait for both to be served again. The backends are started again whatever happens.

    ``during``: called with the client container's transport while the backends are down.

    Returns:
        A report: the settings used, the bounds, and per phase each client's seconds.
    """
    say = on_line or (lambda line: None)
    s = stack.settings
    limits = bounds(s)
    via = Container(ClientContainer(dc, s.project))
    cached = CachedClient(via, route53.host_port(stack))
    clients = {"fresh": lambda: request(via, "alice", path="/whoami", timeout=PROBE_TIMEOUT_S),
               "cached": cached.get}
    faults = Faults(stack, dc)
    report = {"settings": {"LAB_DNS_TTL": s.dns_ttl, "LAB_CHECK_INTER": s.check_inter,
                           "LAB_CHECK_FALL": s.check_fall, "LAB_CHECK_RISE": s.check_rise,
                           "dns_health_interval_s": route53.health_interval(s), "LAB_SORRY": s.sorry},
              "bounds_s": limits}
    cached.resolve()
    say(f"stopping web1 and web2 (the cached client holds {cached.address} for {s.dns_ttl} s)")
    started = time.monotonic()
    report["cached_answer_age_at_stop_s"] = round(started - cached.resolved_at, 2)
    try:
        faults.inject("stop", "all")
        report["failover"] = _watch(stack, clients, sorry_kind(s), limits["failover_cached"] + 10, started)
        say(f"failover: {report['failover']['clients']}")
        if during:
            during(via)
    finally:
        cached.resolve()
        say(f"starting them again (the cached client holds {cached.address} for {s.dns_ttl} s)")
        started = time.monotonic()
        report["cached_answer_age_at_start_s"] = round(started - cached.resolved_at, 2)
        faults.restore("stop", "all")
    report["failback"] = _watch(stack, clients, "served", limits["failback_cached"] + 10, started)
    say(f"failback: {report['failback']['clients']}")
    return report


def print_report(report: dict, console) -> None:
    """The measurement as a person reads it."""
    st = report["settings"]
    console.print(f"settings: TTL {st['LAB_DNS_TTL']} s, HAProxy checks every {st['LAB_CHECK_INTER']} "
                  f"(fall {st['LAB_CHECK_FALL']}, rise {st['LAB_CHECK_RISE']}), DNS health checks every "
                  f"{st['dns_health_interval_s']} s")
    for phase, label in (("failover", "both backends stopped -> sorry site"),
                         ("failback", "backends started -> served again")):
        r = report[phase]
        console.print(f"{label}: DNS answered after {r['dns_answer_after_s']} s")
        for name in ("fresh", "cached"):
            bound = report["bounds_s"][f"{phase}_{name}"]
            console.print(f"  {name:6} client: after {r['clients'][name]} s (bound {bound:.1f} s), "
                          f"saw {r['seen'][name]}")


def within(report: dict) -> dict:
    """phase_client -> whether it arrived within its bound."""
    return {f"{phase}_{name}": t is not None and t <= report["bounds_s"][f"{phase}_{name}"]
            for phase in ("failover", "failback") for name, t in report[phase]["clients"].items()}


def demo(show) -> None:
    """`lab demo sorry-page` with LAB_SORRY=dns: the seed's story (lab/demos.py narrates)."""
    s = show.stack.settings
    port = route53.host_port(show.stack)
    nlb_ip, cdn = s.lb_ips(route53.PRIMARY)[0], route53.cdn_ip(s)
    show.say(f"1. {route53.RECORD} is a failover pair: primary an alias to the NLB (evaluate target "
             "health), secondary the cdn sorry site")
    show.command(["dig", "@127.0.0.1", "-p", str(port), route53.RECORD, "+noall", "+answer"], where="host")
    answer, ttl = route53.resolve(port)
    show.evidence(f"{route53.RECORD}. {ttl} IN A {' '.join(answer)}")
    show.check(answer == [nlb_ip] and ttl == s.dns_ttl,
               f"the DNS server answers the NLB ({nlb_ip}) with the record's TTL ({s.dns_ttl} s)")
    show.say("2. stop both backends; a client resolving afresh and one holding a cached answer keep asking")
    show.command(["lab", "fault", "inject", "stop", "all"], where="host")
    seen = {}

    def while_down(via):
        show.command(["curl", "--cacert", "/certs/ca.pem", "https://www.lab.test/"])
        seen["page"] = request(via, None, path="/", timeout=PROBE_TIMEOUT_S)
        seen["nlb"] = request(via, "alice", path="/whoami", address=nlb_ip, timeout=PROBE_TIMEOUT_S)
        show.evidence(f"HTTP {seen['page'].status} X-Backend: {seen['page'].backend}\n{str(seen['page'].body)[:200]}")
        if ALB_DESIGN in show.clients:  # the ALB fails open too: no sorry page behind it either
            seen["alb"] = show.get(ALB_DESIGN, "alice", show.source)

    report = measure(show.stack, show.dc, on_line=show.note, during=while_down)
    ok = within(report)
    fo, fb = report["failover"], report["failback"]
    page = seen.get("page")
    show.check(page is not None and page.status == 503 and page.backend == route53.CDN.name
               and "down for maintenance" in str(page.body).lower(),
               "the sorry site answers over TLS (its own certificate), no client certificate asked")
    show.check(fo["dns_answer_after_s"] is not None, f"the DNS server answered the sorry site ({cdn}) "
               f"{fo['dns_answer_after_s']} s after the stop")
    show.check(seen.get("nlb") is not None and seen["nlb"].status == 0,
               "the NLB itself serves no sorry page: it fails open, to targets that are not there")
    if "alb" in seen:
        show.check(seen["alb"].status == 503 and not seen["alb"].sorry,
                   "the ALB fails open as well: HAProxy's own 503 once no target answers, no sorry page")
    show.check(ok["failover_fresh"] and ok["failover_cached"],
               f"fresh client on the sorry site after {fo['clients']['fresh']} s, cached after "
               f"{fo['clients']['cached']} s (its TTL is {s.dns_ttl} s), within the bounds")
    show.say("3. start them again")
    show.command(["lab", "fault", "restore", "stop", "all"], where="host")
    show.check(ok["failback_fresh"] and ok["failback_cached"],
               f"back on the backends: fresh after {fb['clients']['fresh']} s, cached after "
               f"{fb['clients']['cached']} s (it kept the sorry site until its TTL ran out)")
    # the lab is as it was when every load balancer has both targets in service again
    for lb in sorted({DESIGNS[d].service for d in show.clients if LOAD_BALANCERS[DESIGNS[d].service].check_backend}):
        try:
            show.stack.runtime_api(lb).wait_up(BACKENDS, timeout=30, backend=LOAD_BALANCERS[lb].check_backend)
        except LabError as exc:
            show.check(False, f"{lb} has both backends in service again ({exc})")
