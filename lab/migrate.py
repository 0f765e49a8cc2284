"""`lab migrate`: the seed's cutover drill. www.lab.test starts as an alias to the ALB without
client-certificate auth (the `alb-before` listener: cookie stickiness, X-Forwarded-For, an
application that asks for no certificate); a steady stream of clients, some holding
certificates and some not yet, keeps asking for it; the alias moves to the NLB through the DNS
server's API (lab/dnsapi.py); then it moves back (the rollback). The alias is left as rendered
(the NLB) however the drill ends; `lab reload` restores it too.

Each client resolves www.lab.test at the lab's DNS server and keeps the answer for its TTL, as
a caching resolver does; the clients' first look-ups are spread over one TTL, so their answers
run out at different moments. Each asks once every PROBE_INTERVAL_S, from its own source
address, with curl in the client container, keeping the ALB's stickiness cookie.

What is expected (the exit code says whether it was seen):
- before: every client served by the ALB, with or without a certificate;
- cutover: every client on the NLB within its TTL (plus one probe's interval and time); those
  with a certificate served, named by it, with no error; those without locked out (refused by
  the backends, which now ask for the certificate), and nothing else;
- rollback: every client back on the ALB within the same bound, served, with no error:
  the ones without a certificate have their access back.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import asdict, dataclass, field

from . import route53
from .client import Container, request
from .containers import ClientContainer, compose_container
from .designs import BACKENDS, DESIGNS
from .dnsapi import DnsApi
from .errors import StackError
from .reload import reload_lock

BEFORE = "alb-before"            # the design www.lab.test is an alias to before the cutover
FRONTS = ("alb", "nlb")          # before, after
# The drill's clients: (name, the certificate it holds or None: not issued one yet)
CLIENTS = (("alice", "alice"), ("bob", "bob"), ("carol", "carol"), ("dave", None), ("erin", None))
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.0
SETTLE_PROBES = 3                # probes each client makes on its new front before a phase ends
REFUSED = (400, 403, 495, 496)   # the backends turning away a client without a certificate


@dataclass
class Probe:
    """One request of one client."""

    client: str
    t: float                     # seconds since the drill started
    front: str                   # the load balancer the client's DNS answer led to ("alb", "nlb", "cdn")
    outcome: str                 # "served", "refused" or "error"
    status: int = 0
    backend: str = ""
    identity: str = ""           # who the backend says the client is (its certificate's subject)
    detail: str = ""


def classify(answer) -> str:
    """served (a backend answered 200), refused (turned away for its certificate), or error."""
    if answer.ok and answer.backend in BACKENDS:
        return "served"
    if answer.status in REFUSED or answer.handshake_failed:
        return "refused"
    return "error"


def expected(front: str, has_cert: bool) -> str:
    """What a client should get from ``front`` (from anywhere else, nothing is right)."""
    if front not in FRONTS:
        return "a front end of the drill"
    return "served" if front == "alb" or has_cert else "refused"


class DrillClient:
    """One user: a source address, maybe a certificate, a DNS cache and the ALB's cookie."""

    def __init__(self, name: str, cert: str | None, source: str, via: Container, fronts: dict, dns_port: int):
        self.name, self.cert, self.source, self.via = name, cert, source, via
        self.fronts = fronts   # address -> front
        self.dns, self.cookie = route53.CachedAnswer(dns_port), None

    def probe(self, started: float) -> Probe:
        address = self.dns.current()
        t = round(time.monotonic() - started, 2)
        if not address:  # no answer to follow: nothing is sent
            return Probe(self.name, t, "", "error", detail=f"no DNS answer for {route53.RECORD}")
        answer = request(self.via, self.cert, path="/whoami", address=address, source=self.source,
                         cookie=self.cookie, timeout=PROBE_TIMEOUT_S)
        if answer.set_cookie.startswith("AWSALB="):
            self.cookie = answer.set_cookie.split(";", 1)[0]
        return Probe(self.name, t, self.fronts.get(address, address), classify(answer),
                     answer.status, answer.backend, answer.json.get("client_subject", ""),
                     "" if answer.status else (answer.error or f"curl exit {answer.curl_exit}")[-120:])


@dataclass
class Drill:
    """The drill's record: every probe, and when the alias moved."""

    ttl: int
    clients: dict                # name -> certificate or None
    probes: list = field(default_factory=list)
    changes: dict = field(default_factory=dict)   # phase -> {"at_s", "to", "dns_answer_after_s"}
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def bound_s(self) -> float:
        """How long a client may keep the old answer: its TTL, then its next probe and that
        probe's own time, plus the DNS server's first look at the new primary."""
        return self.ttl + PROBE_INTERVAL_S + PROBE_TIMEOUT_S + 1.0

    def record(self, probe: Probe) -> None:
        with self.lock:
            self.probes.append(probe)

    def of(self, name: str, start: float, end: float = float("inf")) -> list:
        with self.lock:
            return [p for p in self.probes if p.client == name and start <= p.t < end]

    def moved(self, name: str, phase: str) -> Probe | None:
        """The client's first probe on the new front after the change."""
        change = self.changes[phase]
        return next((p for p in self.of(name, change["at_s"]) if p.front == change["to"]), None)

    def settled(self, phase: str) -> bool:
        """Every client has made SETTLE_PROBES probes on the new front."""
        change = self.changes[phase]
        return all(len([p for p in self.of(n, change["at_s"]) if p.front == change["to"]]) >= SETTLE_PROBES
                   for n in self.clients)


def phase_report(drill: Drill, phase: str, start: float, end: float) -> dict:
    """Per client: when it moved, its errors, and what it got on each front."""
    change = drill.changes.get(phase)
    out = {}
    for name, cert in drill.clients.items():
        probes = drill.of(name, start, end)
        errors = [p for p in probes if p.outcome != expected(p.front, cert is not None)]
        row = {"certificate": cert, "probes": len(probes), "errors": len(errors),
               "error_details": [f"{p.t:.1f}s {p.front}: {p.outcome} {p.status or p.detail}" for p in errors[:5]],
               "fronts": {front: _on_front([p for p in probes if p.front == front])
                          for front in dict.fromkeys(p.front for p in probes)}}
        if change:
            moved = drill.moved(name, phase)
            row["moved_after_s"] = round(moved.t - change["at_s"], 2) if moved else None
            on_new = [p for p in probes if p.front == change["to"]]
            row["on_new_front"] = sorted({p.outcome for p in on_new})
            if cert is None and change["to"] == "nlb":
                row["locked_out"] = bool(on_new) and all(p.outcome == "refused" for p in on_new)
            if cert is None and change["to"] == "alb":
                row["access_back"] = bool(on_new) and all(p.outcome == "served" for p in on_new)
        out[name] = row
    return out


def _on_front(probes: list) -> dict:
    """What a client got from one front: outcomes, backends (one: stickiness held), identity."""
    outcomes = {}
    for p in probes:
        outcomes[p.outcome] = outcomes.get(p.outcome, 0) + 1
    return {"requests": len(probes), "outcomes": outcomes,
            "backends": sorted({p.backend for p in probes if p.backend}),
            "identity": sorted({p.identity for p in probes if p.identity})}


def verdicts(report: dict, bound_s: float) -> list[str]:
    """What was not as expected, one line each ([] when the drill went as it should)."""
    bad = []
    for phase, rows in report["phases"].items():
        for name, row in rows["clients"].items():
            if row["probes"] == 0:
                bad.append(f"{phase}: {name} made no request")
            if row["errors"]:
                bad.append(f"{phase}: {name} got {row['errors']} unexpected answer(s): {row['error_details']}")
            limit = bound_s + rows.get("api_call_s", 0.0)  # the change took effect during the call
            if "moved_after_s" in row and (row["moved_after_s"] is None or row["moved_after_s"] > limit):
                bad.append(f"{phase}: {name} moved after {row['moved_after_s']} s (bound {limit:.1f} s)")
            if row.get("locked_out") is False:
                bad.append(f"{phase}: {name} has no certificate but was not locked out by the NLB")
            if row.get("access_back") is False:
                bad.append(f"{phase}: {name} did not get its access back on the rollback")
            nlb = row["fronts"].get("nlb", {})
            if row["certificate"] and nlb.get("outcomes", {}).get("served") and not (
                    nlb["identity"] and all(i.startswith(f"CN={row['certificate']},") for i in nlb["identity"])):
                bad.append(f"{phase}: {name} was not named by its certificate on the NLB: {nlb.get('identity')}")
            for front, seen in row["fronts"].items():
                if len(seen["backends"]) > 1:  # cookie (ALB) or source address (NLB)
                    bad.append(f"{phase}: {name}'s stickiness did not hold on the {front}: {seen['backends']}")
        if phase == "before" and any(list(row["fronts"]) != ["alb"] for row in rows["clients"].values()):
            bad.append("before: not every client was on the ALB")
    return bad


@contextlib.contextmanager
def _signals_held():
    """Ctrl-C, SIGTERM and SIGHUP wait while the alias is put back."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def require(stack, dc) -> None:
    """The drill starts from the ALB's before-migration listener: the ALB must be running (it
    runs all its listeners, whichever of its designs was asked for)."""
    if "alb" not in {DESIGNS[d].service for d in stack.settings.designs}:
        raise StackError(f"the drill starts where the seed did, www.lab.test an alias to the ALB without "
                         f"client-certificate auth: start it with `lab up --design {BEFORE}` (or "
                         f"LAB_DESIGNS={BEFORE})")
    for service in ("alb", route53.PRIMARY, route53.DNS.name, "client"):
        compose_container(dc, stack.settings.project, service)  # raises naming what is not running


def run(stack, dc, on_line=None) -> dict:
    """The drill, end to end; the alias is put back to the NLB (as rendered) however it ends.

    Returns:
        The report: settings, bound, per phase and client the figures, and ``unexpected``
        (the lines of what was not as expected; empty when all was).
    """
    say = on_line or (lambda line: None)
    s = stack.settings
    require(stack, dc)
    api = DnsApi(stack, dc)
    ips = route53.who(s)
    via = Container(ClientContainer(dc, s.project))
    users = s.client_pool.users
    clients = [DrillClient(name, cert, users[i], via, ips, api.port) for i, (name, cert) in enumerate(CLIENTS)]
    drill = Drill(s.dns_ttl, {c.name: c.cert for c in clients})
    original = api.alias()
    stop = threading.Event()
    started = time.monotonic()
    now = lambda: round(time.monotonic() - started, 2)  # noqa: E731

    def loop(client: DrillClient, delay: float) -> None:
        if stop.wait(delay):
            return
        while not stop.is_set():
            began = time.monotonic()
            try:
                drill.record(client.probe(started))
            except StackError as exc:  # the DNS server did not answer: an error for this client
                drill.record(Probe(client.name, now(), "", "error", detail=str(exc)[:120]))
            stop.wait(max(0.0, PROBE_INTERVAL_S - (time.monotonic() - began)))

    def change(phase: str, to: str) -> None:
        say(f"{phase}: the alias of {route53.RECORD} -> {to} (the DNS server's API)")
        at = now()
        api.set_alias(to)
        drill.changes[phase] = {"at_s": at, "to": to, "api_call_s": round(now() - at, 2), "dns_answer_after_s": None}
        try:
            drill.changes[phase]["dns_answer_after_s"] = api.wait_answer(s.lb_ips(to)[0])
        except StackError as exc:  # its health checks say no: the clients' figures will show it
            say(f"{phase}: {exc}")

    def until_settled(phase: str) -> None:
        deadline = time.monotonic() + drill.bound_s + SETTLE_PROBES * PROBE_INTERVAL_S + 5
        while time.monotonic() < deadline and not drill.settled(phase):
            time.sleep(0.2)

    with reload_lock(s.build_dir):  # a `lab reload` now would restart the DNS server mid-drill
        threads = []
        try:
            say(f"before: {route53.RECORD} an alias to the ALB without client-certificate auth ({BEFORE})")
            api.set_alias("alb")
            api.wait_answer(s.lb_ips("alb")[0])
            spread = s.dns_ttl / len(clients)  # first look-ups over one TTL: answers expire apart
            threads = [threading.Thread(target=loop, args=(c, i * spread), daemon=True) for i, c in enumerate(clients)]
            for t in threads:
                t.start()
            before_end = s.dns_ttl + SETTLE_PROBES * PROBE_INTERVAL_S + 0.5
            while now() < before_end:
                time.sleep(0.2)
            say(f"the NLB is up beside it (always on here); {len(clients)} clients ask once a second")
            change("cutover", "nlb")
            until_settled("cutover")
            change("rollback", "alb")
            until_settled("rollback")
        finally:
            stop.set()
            with _signals_held():  # first: the clients' threads may take a probe to stop
                api.set_alias(route53.PRIMARY)
            say(f"the alias is back to {route53.PRIMARY}, as rendered")
            for t in threads:
                t.join(PROBE_TIMEOUT_S + 3)
        end = now()
        cut, back = drill.changes["cutover"]["at_s"], drill.changes["rollback"]["at_s"]
        report = {
            "settings": {"LAB_DNS_TTL": s.dns_ttl, "probe_interval_s": PROBE_INTERVAL_S,
                         "clients": {c.name: {"certificate": c.cert, "source": c.source} for c in clients}},
            "bound_s": round(drill.bound_s, 1),
            "phases": {
                "before": {"clients": phase_report(drill, "before", 0, cut)},
                "cutover": {**drill.changes["cutover"], "clients": phase_report(drill, "cutover", cut, back)},
                "rollback": {**drill.changes["rollback"], "clients": phase_report(drill, "rollback", back, end)},
            },
            "alias_found": original,
            "alias_restored_to": route53.PRIMARY,
            "probes": [asdict(p) for p in drill.probes],
        }
        report["unexpected"] = verdicts(report, drill.bound_s)
        return report


def print_report(report: dict, echo) -> None:
    """The drill as a person reads it."""
    st = report["settings"]
    echo(f"TTL {st['LAB_DNS_TTL']} s; each client asks every {st['probe_interval_s']:g} s and keeps its DNS "
         f"answer for the TTL; a client must move within {report['bound_s']} s")
    for phase, label in (("before", "before: www -> ALB (no client-certificate auth)"),
                         ("cutover", "cutover: www -> NLB (TLS passthrough, the backends ask for the certificate)"),
                         ("rollback", "rollback: www -> ALB")):
        rows = report["phases"][phase]
        echo("")
        extra = (f" (the API change at {rows['at_s']} s; the DNS server answered it "
                 f"{rows['dns_answer_after_s']} s later)") if "at_s" in rows else ""
        echo(label + extra)
        for name, row in rows["clients"].items():
            cert = row["certificate"] or "none yet"
            parts = [f"  {name:6} certificate {cert:9}"]
            if "moved_after_s" in row:
                parts.append(f"moved after {row['moved_after_s']} s")
            parts.append(f"{row['errors']} unexpected")
            if "locked_out" in row:
                parts.append("LOCKED OUT (no certificate)" if row["locked_out"] else "not locked out")
            if "access_back" in row:
                parts.append("access back" if row["access_back"] else "NO access back")
            for front, seen in row["fronts"].items():
                got = ", ".join(f"{n} {o}" for o, n in seen["outcomes"].items())
                who = f" as {seen['identity'][0].split(',')[0]}" if seen["identity"] else ""
                parts.append(f"{front.upper()}: {got} by {'/'.join(seen['backends']) or '-'}{who}")
            echo("; ".join(parts))
    echo("")
    if report["unexpected"]:
        for line in report["unexpected"]:
            echo(f"unexpected: {line}")
    else:
        echo(f"as expected; the alias is back to {report['alias_restored_to']}")
