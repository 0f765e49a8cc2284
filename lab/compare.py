"""`lab compare`: the same client matrix against every running design, one table.

Every cell comes from a live probe made with curl from the client container (so the
source address is known): a valid client, a rogue-CA client, no certificate, a
SQL-injection request, repeated requests for stickiness, and the backend's own log for
what it saw of the client's address.
"""

from __future__ import annotations

import json
import secrets

from . import route53
from .answer import Answer
from .client import Container, Listener
from .containers import ClientContainer
from .designs import BACKEND_LISTENERS, BACKENDS, DESIGNS, load_balancer
from .errors import NotReached
from .stack import Stack

SQLI = "id=1%27%20OR%20%271%27%3D%271"


def clients_for(stack: Stack, dc) -> dict:
    """design -> Listener (curl in the client container, aimed at the design's load balancer),
    for the designs whose load balancer is running."""
    running = {r["service"] for r in stack.services() if r["state"] == "running"}
    if "client" not in running:
        return {}
    via = Container(ClientContainer(dc, stack.settings.project))
    return {name: Listener(via, name, stack.settings.lb_ips(d.service)[0], d.container_port)
            for name, d in DESIGNS.items() if d.service in running}


def _backend_log(stack: Stack, nonce: str) -> dict:
    """The backend's JSON log line for the request carrying ``nonce``."""
    logs = stack.compose.logs("web1", "web2", tail=400)
    for line in reversed(logs.splitlines()):
        if nonce in line and "|" in line:
            try:
                return json.loads(line.split("|", 1)[1])
            except ValueError:
                continue
    return {}


def _enforcement(refused: Answer) -> str:
    if refused.handshake_failed:
        return "load balancer, TLS handshake"
    listener = BACKEND_LISTENERS.get(refused.json.get("listener"))
    if refused.status == 400 and listener:
        return listener.refused_by
    return f"unclear (HTTP {refused.status}, curl exit {refused.curl_exit})"


def probe_design(stack: Stack, client: Listener) -> dict:
    """Run the matrix against one design; return its cells and the evidence behind them."""
    s = stack.settings
    src, other_sources = s.client_pool.probe, s.client_pool.users[:6]
    nonce = secrets.token_hex(4)
    alice = client.get("alice", src, path=f"/whoami?probe={nonce}")
    rogue = client.get("rogue-ca", src)
    nocert = client.get(None, src)
    sqli = client.get("alice", src, path=f"/whoami?{SQLI}")
    log = _backend_log(stack, nonce)

    auth_ok = alice.status == 200 and alice.json.get("client_verify") == "SUCCESS"
    rogue_in = rogue.status == 200
    none_in = nocert.status == 200
    asked = alice.json.get("client_verify") != "NONE" or not alice.ok  # NONE and served: never asked
    if rogue_in and none_in and not asked:  # the application before the migration (alb-before)
        auth = "none: no certificate asked, everyone gets in"
    elif rogue_in or none_in:
        auth = "UNSAFE: " + ("rogue CA accepted" if rogue_in else "no certificate accepted")
    elif auth_ok:
        auth = "works"
    else:
        verdict = alice.json.get("client_verify") or f"HTTP {alice.status}"
        auth = f"BROKEN: valid client refused ({verdict})"
    if auth.startswith("none"):
        enforced = "nowhere"
    elif auth.startswith("BROKEN"):
        enforced = f"nowhere: the {_enforcement(alice)} check never gets the certificate"
    else:
        enforced = _enforcement(rogue)

    subject = alice.json.get("client_subject", "")
    if auth_ok and subject:
        via = BACKEND_LISTENERS.get(alice.json.get("listener"))
        how = via.identity if via else "?"
        if "not forwarded" in how:  # the NLB TLS listener with the lab's PROXY v2 option: it says how
            how = alice.json.get("identity_source") or how
        identity = f"yes, {how} ({subject.split(',')[0]})"
    elif auth_ok:
        identity = "no: verified at the LB, not forwarded"
    else:
        identity = "no"

    seen_ip = alice.json.get("client_ip") or log.get("client_ip")
    if seen_ip == src:
        client_ip = f"yes, {alice.json.get('client_ip_source') or 'logged'}"
    elif log.get("x_forwarded_for", "").split(",")[-1].strip() == src:
        client_ip = "X-Forwarded-For only (logged)"
    else:
        client_ip = f"no (saw {seen_ip or '-'})"

    # Stickiness: the same address five times without cookies, then with the cookie returned.
    # Only answers a backend gave count: a refused request says nothing about balancing.
    def backends(answers) -> list:
        return [a.backend for a in answers if a.status and a.backend in BACKENDS]

    same_ip = backends(client.get("bob", src) for _ in range(5))
    cookie = alice.set_cookie.split(";")[0] if alice.set_cookie else ""
    if cookie:
        pinned = set(backends(client.get("bob", src, cookie=cookie) for _ in range(5)))
        if not pinned:
            sticky = "unknown: no request with the cookie was served by a backend"
        else:
            sticky = f"cookie {cookie.split('=')[0]}" if len(pinned) == 1 else "cookie set but not honoured"
    elif len(same_ip) < 5:
        sticky = f"unknown: {5 - len(same_ip)} of 5 requests were not served by a backend"
    elif len(set(same_ip)) == 1 and not load_balancer(client.design).source_sticky:
        sticky = f"none (only {same_ip[0]} served)"
    elif len(set(same_ip)) == 1:
        api = stack.runtime_api(DESIGNS[client.design].service)
        # new addresses spread only over the servers in service: a backend just back from a
        # fault needs `rise` passed checks first
        try:
            api.wait_up(BACKENDS, timeout=10)
        except NotReached as exc:
            sticky = f"source IP (spread not checked: {exc})"
        else:
            # the probe addresses' own pins (from earlier runs) would decide for them: forget them
            api.forget(other_sources)
            spread = set(backends(client.get("bob", ip) for ip in other_sources))
            sticky = "source IP" if len(spread) > 1 else "source IP (all probes landed on one backend)"
    else:
        sticky = "none"

    waf_where = sqli.json.get("waf") if sqli.status == 403 else None
    if waf_where:
        waf = "yes, at the LB (403)" if waf_where == "load balancer" else "yes, on the backends (403)"
    elif sqli.status == 200:
        waf = "no: passes unseen"
    else:
        waf = f"untested (HTTP {sqli.status})"

    return {
        "summary": DESIGNS[client.design].summary,
        "client_cert_auth": auth,
        "enforced_at": enforced,
        "backend_sees_identity": identity,
        "backend_sees_client_ip": client_ip,
        "stickiness": sticky,
        "waf_can_inspect": waf,
        "sorry_page": route53.sorry_source(s, DESIGNS[client.design].service),
        "evidence": {
            "alice": {"status": alice.status, "curl_exit": alice.curl_exit, "body": alice.body},
            "rogue_ca": {"status": rogue.status, "curl_exit": rogue.curl_exit, "body": rogue.body},
            "no_certificate": {"status": nocert.status, "curl_exit": nocert.curl_exit, "body": nocert.body},
            "sql_injection": {"status": sqli.status, "body": sqli.body},
            "backend_log": {k: log.get(k) for k in ("client_ip", "peer_ip", "x_forwarded_for", "client_verify")},
            "source_ip": src,
        },
    }


def compare(stack: Stack, dc) -> dict:
    """design -> probe result, for every running design (NLB first)."""
    return {name: probe_design(stack, client) for name, client in clients_for(stack, dc).items()}


COLUMNS = (
    ("client_cert_auth", "client-cert auth"),
    ("enforced_at", "enforced at"),
    ("backend_sees_identity", "backend sees identity"),
    ("backend_sees_client_ip", "backend sees client IP"),
    ("stickiness", "stickiness"),
    ("waf_can_inspect", "WAF can inspect"),
    ("sorry_page", "sorry page (every target down)"),
)


def print_table(results: dict, console=None) -> None:
    """Draw ``compare``'s results: one row per design, one column per COLUMNS entry."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="the same clients against every running design", show_lines=True)
    table.add_column("design", style="bold")
    for _, title in COLUMNS:
        table.add_column(title)
    for name, r in results.items():
        table.add_row(name, *(r[key] for key, _ in COLUMNS))
    (console or Console(width=max(Console().width, 150))).print(table)
