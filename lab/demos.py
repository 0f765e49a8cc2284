"""`lab demo NAME`: one seed claim at a time, shown live and checked.

Each demo narrates what it does, shows the command it runs (the one a trainer could
type), prints the evidence, and checks the claim. It exits non-zero when the behaviour
it claims is not observed, so a demo that "works" on stage has actually been seen.
"""

from __future__ import annotations

import collections
import json
import shlex
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape

from . import failover, compare, containers, fault
from .client import Host, command, request, request_many
from .credentials import Credentials
from .wait import wait_for
from .designs import BACKENDS, DESIGNS, LOAD_BALANCERS, load_balancer
from .errors import LabError
from .stack import Stack

DEMOS: dict = {}


def demo(name: str, claim: str, needs=("nlb",)):
    def register(func):
        DEMOS[name] = (func, claim, tuple(needs))
        return func
    return register


@dataclass
class Show:
    """The narrator: steps, commands, evidence and checked claims."""

    stack: Stack
    dc: object
    clients: dict
    console: Console = field(default_factory=lambda: Console(highlight=False, soft_wrap=True))
    results: list = field(default_factory=list)

    def say(self, text: str) -> None:
        self.console.print(f"\n[bold]{escape(text)}[/]")

    def note(self, text: str) -> None:
        self.console.print(f"  {escape(text)}")

    def command(self, argv: list, where: str = "client") -> None:
        prefix = ["docker", "compose", "-p", self.stack.settings.project, "exec", "client"] if where == "client" else []
        self.console.print(f"  [cyan]$ {escape(shlex.join(prefix + list(argv)))}[/]")

    def evidence(self, text: str) -> None:
        for line in str(text).strip().splitlines()[:12]:
            self.console.print(f"  [dim]│[/] {escape(line)}")

    def check(self, ok: bool, claim: str) -> bool:
        self.results.append((ok, claim))
        mark = "[green]✓ seen:[/]" if ok else "[red]✗ NOT seen:[/]"
        self.console.print(f"  {mark} {escape(claim)}")
        return ok

    def get(self, design: str, client="alice", source=None, path="/whoami", cookie=None, headers=None):
        c = self.clients[design]
        self.command(c.command(client, source, path, cookie, headers))
        answer = c.get(client, source, path, cookie, headers)
        shown = json.dumps(answer.body) if isinstance(answer.body, dict) else str(answer.body)
        self.evidence(f"{shown or f'(no HTTP answer: curl exit {answer.curl_exit})'}\nHTTP {answer.status or '-'}")
        return answer

    @property
    def source(self) -> str:
        return self.stack.settings.client_pool.demo


# ---------------------------------------------------------------------------
@demo("alb-breaks-mtls", "C1: a TLS-terminating load balancer breaks client-certificate auth", needs=("nlb", "alb"))
def alb_breaks_mtls(show: Show):
    show.say("1. alice, with a valid certificate, through the NLB (TLS passes through to the backend)")
    nlb = show.get("nlb", "alice", show.source)
    show.check(nlb.status == 200 and nlb.json.get("client_verify") == "SUCCESS",
               "through the NLB the backend verified alice's certificate (200, SUCCESS)")
    show.say("2. the same alice, the same certificate, through the ALB (TLS ends at the load balancer)")
    alb = show.get("alb", "alice", show.source)
    show.check(alb.status == 400 and alb.json.get("client_verify") == "NONE",
               "through the ALB the backend got no client certificate at all (400, NONE)")
    show.say("3. why: the ALB never even asks the client for a certificate")
    for design in ("nlb", "alb"):
        asks = "asks" if design == "nlb" else "does not ask"
        port, address = DESIGNS[design].container_port, show.clients[design].address
        argv = ["openssl", "s_client", "-connect", f"{address}:{port}", "-servername", "www.lab.test",
                "-CAfile", str(Credentials(None, None).container_ca)]
        show.command(argv)
        _, out = show.clients[design].box.exec(["timeout", "10"] + argv)
        lines = [l for l in out.splitlines() if "client certificate CA names" in l or "CA names sent" in l]
        show.evidence("\n".join(lines) or "(no CA list line)")
        # the handshake must have happened for either answer to mean anything
        if not show.check("Verify return code: 0 (ok)" in out, f"the {design.upper()} completed a TLS handshake"):
            continue
        asked = "Acceptable client certificate CA names" in out
        show.check(asked == (design == "nlb"), f"the {design.upper()} listener {asks} for a client certificate")
    show.note("The backend demands a certificate from whoever connects to it: with an ALB that is the ALB,")
    show.note("which has none. Client-certificate auth must happen where TLS ends (seed claim C1).")


@demo("nlb-passthrough", "C1: an NLB with a TCP listener keeps client-certificate auth end to end")
def nlb_passthrough(show: Show):
    show.say("1. alice through the NLB: the backend itself verified her certificate")
    ok = show.get("nlb", "alice", show.source)
    show.check(ok.status == 200 and ok.json.get("identity_source") == "tls"
               and ok.json.get("client_subject", "").startswith("CN=alice"),
               "the backend saw alice's certificate in its own TLS handshake")
    show.say("2. a certificate from a CA nobody trusts, and no certificate at all")
    rogue = show.get("nlb", "rogue-ca", show.source)
    none = show.get("nlb", None, show.source)
    show.check(rogue.status == 400 and rogue.json.get("client_verify", "").startswith("FAILED:"),
               "the rogue-CA client is refused by the backend, with nginx's reason")
    show.check(none.status == 400 and none.json.get("client_verify") == "NONE", "no certificate: refused")
    show.say("3. the load balancer holds no key: it cannot read or change the TLS stream")
    nlb = containers.compose_container(show.dc, show.stack.settings.project, "nlb")
    mounts = [m["Destination"] for m in nlb.attrs["Mounts"]]
    show.command(["docker", "inspect", "--format", "{{range .Mounts}}{{.Destination}} {{end}}", nlb.name], where="host")
    show.evidence(" ".join(mounts))
    show.check("/etc/lab/server" not in mounts, "no server certificate or key is mounted into the NLB")


@demo("nat-stickiness", "C2: NLB stickiness keys on the source IP, so users behind one NAT pile onto one server")
def nat_stickiness(show: Show):
    s = show.stack.settings
    via = show.clients["nlb"].via  # through the name www.lab.test, as the users would
    nat = s.client_pool.nat
    show.say(f"1. 30 requests from 30 users behind one NAT address ({nat}): 15 as alice, 15 as bob")
    show.command(command(via, "alice", source=nat) + ["... x15"])
    replies = request_many(via, "alice", count=15, source=nat) + request_many(via, "bob", count=15, source=nat)
    counts = collections.Counter(r.backend for r in replies)
    show.evidence(f"backends: {dict(counts)}")
    show.check(len(counts) == 1 and sum(counts.values()) == 30, "all 30 landed on one backend")
    users = s.client_pool.users[:8]
    show.say(f"2. {len(users)} users, each with an address of their own (new to the load balancer)")
    show.stack.runtime_api().forget(users)  # pins from earlier runs would decide for them
    spread = {ip: request(via, "bob", source=ip).backend for ip in users}
    show.evidence("\n".join(f"{ip} -> {b}" for ip, b in spread.items()))
    show.check(set(spread.values()) == {"web1", "web2"}, "distinct addresses spread over both backends")
    show.say("3. what the load balancer keeps: a stick table keyed by source address")
    show.command(["lab", "api", "show", "table", "web"], where="host")
    table = show.stack.runtime_api().stick_table()
    show.evidence("\n".join(f"{ip} -> {srv}" for ip, srv in table.items() if ip in spread or ip == nat))
    show.check(table.get(nat) == replies[0].backend, "the NAT address is one entry, pinned to that backend")
    _pins_after_a_health_change(show, via, users)


def _pins_after_a_health_change(show: Show, via, users) -> None:
    """What a target's health change does to the pins, in the mode LAB_NLB_STICKINESS chose."""
    faults = fault.Faults(show.stack, show.dc)
    # the running load balancer's mode (haproxy/nlb.cfg.j2), whatever this shell's LAB_* say
    mode = faults.api.command("show env LAB_NLB_STICKINESS").strip().partition("=")[2]
    show.say(f"4. a target's health changes: web1 stops, then comes back (LAB_NLB_STICKINESS={mode})")
    show.command(["lab", "fault", "inject", "stop", "web1"], where="host")
    faults.inject("stop", "web1")
    try:
        wait_for(lambda: faults.api.server_states().get("web1") == "DOWN", 15, what="web1 DOWN")
        time.sleep(0.5)  # the reset follows the server event
        moved = {ip: request(via, "bob", source=ip).backend for ip in users}
    finally:
        show.command(["lab", "fault", "restore", "stop", "web1"], where="host")
        faults.restore("stop", "web1")
    faults.api.wait_up(("web1",), timeout=30)
    time.sleep(0.5)
    show.command(["lab", "api", "show", "table", "web"], where="host")
    table = faults.api.stick_table()
    kept = {ip: table.get(ip) for ip in users}
    show.evidence("\n".join(f"{ip} -> {srv or '(no entry)'}" for ip, srv in kept.items()))
    show.check(set(moved.values()) == {"web2"}, "while web1 was down its users went to web2")
    if mode == "aws":
        show.check(not any(kept.values()), "web1's return emptied the table: an AWS NLB 'might reset the "
                   "sticky sessions' when a target's health changes, and the lab does")
        after = {ip: request(via, "bob", source=ip).backend for ip in users}
        show.evidence(", ".join(f"{ip} -> {b}" for ip, b in after.items()))
        show.check(set(after.values()) == {"web1", "web2"}, "so the users are balanced afresh over both")
        show.note("LAB_NLB_STICKINESS=haproxy keeps them where they were re-pinned instead.")
    else:
        show.check(kept == {ip: "web2" for ip in users},
                   "HAProxy kept every user on web2 after web1 came back (until the entry expires)")
        show.note("LAB_NLB_STICKINESS=aws (the default) resets the table instead, as an AWS NLB might.")


@demo("client-ip", "C3: the NLB keeps the client's address; an ALB replaces it with its own (X-Forwarded-For)")
def client_ip(show: Show):
    s = show.stack.settings
    show.say(f"1. through the NLB from {show.source}: the backend learns the address from PROXY protocol v2")
    nlb = show.get("nlb", "alice", show.source)
    show.check(nlb.json.get("client_ip") == show.source and nlb.json.get("peer_ip") == s.nlb_vpc_ip,
               "client_ip is the client's own address; the TCP peer is the NLB")
    show.check(nlb.json.get("client_ip_source") == "PROXY protocol v2", "it came from the PROXY v2 header")
    if "alb-mtls-verify" in show.clients:
        show.say("2. through the ALB: the TCP peer is the ALB; the address travels in X-Forwarded-For")
        alb = show.get("alb-mtls-verify", "alice", show.source)
        show.check(alb.json.get("client_ip") == show.source and alb.json.get("peer_ip") == s.lb_ips("alb")[1]
                   and alb.json.get("client_ip_source") == "X-Forwarded-For",
                   "the backend takes it from X-Forwarded-For, believed from the ALB only")
    else:
        show.note("(start the ALB designs with `lab up --all-designs` to see the X-Forwarded-For contrast)")


@demo("sorry-page", "C4: the sorry page takes over when every backend is down (Route 53 failover to the "
                    "cdn sorry site; LAB_SORRY=lb: in the load balancer), and traffic fails back")
def sorry_page(show: Show):
    if show.stack.settings.sorry == "dns":
        return failover.demo(show)
    faults = fault.Faults(show.stack, show.dc)
    host, port = Host(show.stack.settings.certs_dir), show.stack.nlb_port()
    show.say("1. stop both backends")
    show.command(["lab", "fault", "inject", "stop", "all"], where="host")
    faults.inject("stop", "all")
    try:
        seen = wait_for(lambda: (r := request(host, "alice", port=port)).backend == "sorry" and r, 15,
                        what="the sorry page")
        show.evidence(f"HTTP {seen.status} {seen.body}")
        show.check(seen.status == 503, "the sorry page answers, 503, over the same certificate")
        page = request(host, None, port=port, path="/")
        show.evidence(str(page.body)[:300])
        show.check(page.status == 503 and "down for maintenance" in str(page.body).lower(),
                   "a person sees a maintenance page (no client certificate needed)")
        show.check("sorry" not in faults.api.stick_table().values(), "and nobody is pinned to it (non-stick)")
    finally:
        show.say("2. start them again")
        show.command(["lab", "fault", "restore", "stop", "all"], where="host")
        faults.restore("stop", "all")
    back = wait_for(lambda: (r := request(host, "alice", port=port)).status == 200 and r, 30,
                    what="fail back")
    show.evidence(f"HTTP {back.status} backend={back.backend}")
    show.check(back.backend in ("web1", "web2"), "traffic failed back to the backends by itself")
    # one backend serving is a fail-back; the lab is as it was when every load balancer
    # has both in service again (each needs `rise` passed checks per backend)
    for lb in sorted({DESIGNS[d].service for d in show.clients if load_balancer(d).check_backend}):
        api = show.stack.runtime_api(lb)
        try:
            api.wait_up(BACKENDS, timeout=30, backend=LOAD_BALANCERS[lb].check_backend)
        except LabError as exc:
            show.check(False, f"{lb} has both backends in service again ({exc})")
        else:
            show.check(True, f"{lb} has both backends in service again")


@demo("waf-tradeoff", "C5: a WAF must sit where TLS ends; NLB passthrough hides requests from a WAF at the LB",
      needs=("nlb", "alb"))
def waf_tradeoff(show: Show):
    path = f"/whoami?{compare.SQLI}"
    show.say("1. a SQL-injection attempt through the ALB, whose WAF sees the decrypted request")
    alb = show.get("alb-mtls-verify" if "alb-mtls-verify" in show.clients else "alb", "alice", show.source, path)
    show.check(alb.status == 403 and alb.json.get("waf") == "load balancer", "blocked (403) by the WAF at the ALB")
    show.say("2. the same request through the NLB: encrypted until it reaches the backend")
    nlb = show.get("nlb", "alice", show.source, path)
    show.check(nlb.status == 200, "it passes unseen and is served (200)")
    show.say("3. the seed's way out, if one wants a WAF anyway: run it on the backends")
    show.command(["env", "LAB_BACKEND_WAF=on", "lab", "reload"], where="host")
    waf_on = Stack(show.stack.settings.with_(backend_waf=True))
    waf_on.reload(dc=show.dc, services=("web1", "web2"))
    try:
        back = show.get("nlb", "alice", show.source, path)
        show.check(back.status == 403 and str(back.json.get("waf", "")).startswith("backend"),
                   "blocked (403) by ModSecurity on the backend")
    finally:
        show.command(["lab", "reload"], where="host")
        show.stack.reload(dc=show.dc, services=("web1", "web2"))
    show.note("The seed's author accepted losing the WAF: access is limited to certificate holders and the")
    show.note("application was audited. ALB mutual TLS (2023) now lets WAF and client certificates coexist.")


@demo("cloudfront-mtls", "C5 today: CloudFront viewer mTLS checks the certificate at the edge, and AWS WAF "
      "inspects the same requests", needs=("nlb", "cloudfront"))
def cloudfront_mtls(show: Show):
    show.say("1. alice through CloudFront (required mode): the edge verifies her, the origin reads headers")
    ok = show.get("cloudfront-mtls", "alice", show.source)
    show.check(ok.status == 200 and ok.json.get("listener") == "cloudfront-headers"
               and ok.json.get("client_subject", "").startswith("CN=alice"),
               "the backend knows alice from CloudFront-Viewer-Cert-Subject, believed from CloudFront only")
    serial = ok.json.get("client_serial", "")
    show.evidence(f"serial: {serial}\nvalidity: {ok.json.get('client_validity')}")
    show.check(serial == serial.lower() and ":" in serial, "the serial arrives as CloudFront writes it: hex pairs, colons")
    show.check(ok.json.get("client_ip") == show.source, "the client address arrives in X-Forwarded-For")
    show.say("2. a rogue-CA certificate, and a SQL-injection attempt by a valid client")
    rogue = show.get("cloudfront-mtls", "rogue-ca", show.source)
    show.check(rogue.handshake_failed, f"refused in the TLS handshake at the edge ({rogue.alert or '-'})")
    sqli = show.get("cloudfront-mtls", "alice", show.source, f"/whoami?{compare.SQLI}")
    show.check(sqli.status == 403 and sqli.json.get("waf") == "load balancer",
               "blocked (403) by the WAF at the edge: client certificates and a WAF together")
    show.say("3. optional mode: no certificate gets through the edge, and the origin decides")
    none = show.get("cloudfront-mtls-optional", None, show.source)
    show.check(none.status == 400 and none.json.get("client_verify") == "NONE",
               "no certificate: the TLS handshake succeeds, the origin refuses (400, NONE)")
    bad = show.get("cloudfront-mtls-optional", "rogue-ca", show.source)
    show.check(bad.handshake_failed, "an invalid certificate is still refused at the edge")
    if "alb-mtls-verify" in show.clients:
        show.say("4. the 2023 answer beside it: ALB mutual TLS (verify) with its WAF")
        alb = show.get("alb-mtls-verify", "alice", show.source, f"/whoami?{compare.SQLI}")
        show.check(alb.status == 403, "the ALB's WAF blocks the same request (403)")
    show.note("The seed lost its WAF by moving to an NLB (C5). ALB mutual TLS (2023) and CloudFront viewer")
    show.note("mTLS (2025) both check the certificate where TLS ends, so a WAF there reads every request.")


@demo("alb-mtls-headers", "ALB mutual TLS: verify mode forwards X-Amzn-Mtls-* headers; passthrough forwards the chain",
      needs=("nlb", "alb"))
def alb_mtls_headers(show: Show):
    show.say("1. verify mode: the ALB checks the certificate and tells the backend who it was")
    ok = show.get("alb-mtls-verify", "alice", show.source)
    show.check(ok.status == 200 and ok.json.get("client_subject", "").startswith("CN=alice")
               and ok.json.get("listener") == "alb-headers",
               "the backend knows alice from X-Amzn-Mtls-Clientcert-Subject/-Serial-Number/-Issuer")
    show.evidence(f"validity: {ok.json.get('client_validity')}\nleaf: {ok.json.get('client_leaf_start')}...")
    show.check(ok.json.get("client_leaf_start", "").startswith("-----BEGIN%20CERTIFICATE-----%0A"),
               "X-Amzn-Mtls-Clientcert-Leaf carries the URL-encoded PEM")
    rogue = show.get("alb-mtls-verify", "rogue-ca", show.source)
    show.check(rogue.handshake_failed, "a rogue-CA certificate fails the TLS handshake at the ALB")
    show.say("2. passthrough mode: the ALB asks for a certificate, checks nothing, forwards the chain")
    carol = show.get("alb-mtls-passthrough", "carol", show.source)
    show.check(carol.status == 200 and carol.json.get("client_subject", "").startswith("CN=carol"),
               "the backend verified carol's chain (leaf + intermediate) from X-Amzn-Mtls-Clientcert")
    rogue = show.get("alb-mtls-passthrough", "rogue-ca", show.source)
    show.check(rogue.status == 400 and rogue.json.get("client_verify", "").startswith("FAILED:"),
               "the rogue-CA chain reached the backend, which refused it with OpenSSL's reason")


@demo("header-spoofing", "identity headers are never believed from a client, only from the load balancer",
      needs=("nlb", "alb"))
def header_spoofing(show: Show):
    forged = {"X-Amzn-Mtls-Clientcert-Subject": "CN=admin,O=mTLS Lab",
              "X-Amzn-Mtls-Clientcert-Serial-Number": "01", "X-Forwarded-For": "6.6.6.6"}
    show.say("1. bob claims to be admin, through the ALB in verify mode")
    bob = show.get("alb-mtls-verify", "bob", show.source, headers=forged)
    show.check(bob.json.get("client_subject", "").startswith("CN=bob") and bob.json.get("client_ip") == show.source,
               "the ALB dropped the forged headers: the backend sees bob, at his real address")
    show.say("2. the same forged headers sent straight to the backend's header listener")
    s = show.stack.settings
    straight = {"port": DESIGNS["alb-mtls-verify"].target.port, "address": s.backend_ip("web1"), "headers": forged, "timeout": 10}
    host = Host(s.certs_dir)
    show.command(command(host, None, **straight), where="host")
    answer = request(host, None, **straight)
    show.evidence(json.dumps(answer.body) if answer.json else str(answer))
    show.check(answer.client_verify == "NONE" and "admin" not in json.dumps(answer.body),
               "not from the ALB's address: the headers are ignored and the request refused")


# ---------------------------------------------------------------------------
def run(name: str, stack: Stack, dc, console: Console | None = None) -> bool:
    """Run demo ``name``; True when every claim was observed.

    Raises:
        LabError: for an unknown demo, or a design it needs that is not running.
    """
    if name not in DEMOS:
        raise LabError(f"unknown demo {name!r}: choose one of {', '.join(DEMOS)}")
    func, claim, needs = DEMOS[name]
    clients = compare.clients_for(stack, dc)
    running_services = {DESIGNS[d].service for d in clients}
    missing = [n for n in needs if n not in running_services]
    if missing:
        raise LabError(f"demo {name} needs the {', '.join(missing)} load balancer: "
                       f"`lab up --all-designs` (or `--design {missing[0]}`) first")
    show = Show(stack, dc, clients, **({"console": console} if console else {}))
    show.console.rule(f"[bold]{escape(name)}[/]: {escape(claim)}")
    func(show)
    seen = bool(show.results) and all(ok for ok, _ in show.results)  # no check, no claim
    failed = [c for ok, c in show.results if not ok]
    show.console.print()
    if seen:
        show.console.print(f"[green bold]claim observed[/] ({len(show.results)} checks)")
    elif not show.results:
        show.console.print("[red bold]claim NOT observed[/]: the demo checked nothing")
    else:
        show.console.print(f"[red bold]claim NOT observed[/]: {escape('; '.join(failed))}")
    return seen
