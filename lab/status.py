"""`lab status`: what runs, on which ports and networks, how long the certificates last,
and who is pinned where (HAProxy's stick tables, read from the runtime API)."""

from __future__ import annotations

import datetime as dt

from rich.console import Console
from rich.table import Table

from . import certs, crls, deregister, pemfile, pki, route53
from .designs import DESIGNS, LOAD_BALANCERS
from .errors import StackError
from .stack import Stack

WARN_WITHIN = dt.timedelta(days=7)
# Certificates that must stay valid (the others teach by being invalid).
MUST_BE_VALID = ("alice", "bob", "carol")


def _expiry(name: str, when: dt.datetime, now: dt.datetime) -> dict:
    left = when - now
    state = "expired" if left.total_seconds() <= 0 else ("expires soon" if left < WARN_WITHIN else "ok")
    return {"name": name, "expires": when.isoformat(), "days_left": round(left.total_seconds() / 86400, 1),
            "state": state}


def certificates(certs_dir, now: dt.datetime | None = None) -> list[dict]:
    """Expiry of the CAs, server, health and valid client certificates, and the CRLs' nextUpdate."""
    now = now or pki.utcnow()
    lay = certs.Layout(certs_dir)
    rows = []
    named = [("lab CA", lay.ca_cert), ("intermediate CA", lay.intermediate_cert),
             ("server www.lab.test", lay.server_cert), ("health check", lay.health_cert)]
    named += [(f"client {c}", lay.client_cert(c)) for c in MUST_BE_VALID]
    for name, path in named:
        if path.exists():
            rows.append(_expiry(name, pemfile.load_cert(path).not_valid_after_utc, now))
        else:
            rows.append({"name": name, "expires": None, "days_left": None, "state": "missing"})
    for crl in crls.load_crls(lay.crl):
        cn = crl.issuer.rfc4514_string().split(",")[0].removeprefix("CN=")
        rows.append(_expiry(f"CRL of {cn} (nextUpdate)", crl.next_update_utc, now))
    return rows


def stick_tables(stack: Stack, running: set) -> dict:
    """load balancer -> {client IP -> server}, for the source-IP-sticky load balancers."""
    tables = {}
    for lb in [b.service for b in LOAD_BALANCERS.values() if b.source_sticky]:
        if lb in running:
            try:
                tables[lb] = stack.runtime_api(lb, timeout=2).stick_table()
            except (OSError, StackError):
                tables[lb] = {}
    return tables


def collect(stack: Stack, dc=None) -> dict:
    """Everything `lab status` shows, as one dict (the --json output)."""
    s = stack.settings
    services = stack.services(dc)
    running = {r["service"] for r in services if r["state"] == "running"}
    designs_up = [name for name, d in DESIGNS.items() if d.service in running]
    cert_rows = certificates(s.certs_dir)
    warnings = [f"{r['name']}: {r['state']}" + (f" ({r['days_left']} days left)" if r["days_left"] is not None else "")
                + " - renew with `lab certs`, then `lab reload`"
                for r in cert_rows if r["state"] != "ok"]
    return {
        "project": s.project,
        "services": services,
        "designs_up": designs_up,
        "networks": {"internet": str(s.internet_subnet), "vpc": str(s.vpc_subnet),
                     "client_addresses": f"{s.client_ip}, {s.client_extra_ips[0]}-{s.client_extra_ips[-1]}"},
        "certificates": cert_rows,
        "stick_tables": stick_tables(stack, running),
        "deregistrations": deregister.report(stack) if deregister.LB in running else [],
        "dns": _dns(stack) if route53.DNS.name in running else None,
        "warnings": warnings,
    }



def _dns(stack: Stack) -> dict:
    """What the DNS server answers for www.lab.test now, and who that is."""
    s = stack.settings
    who = {s.lb_ips(lb)[0]: lb for lb in route53.ALIAS_TARGETS} | {route53.cdn_ip(s): route53.CDN.name}
    try:
        answer, ttl = route53.resolve(route53.host_port(stack), timeout=1)
    except StackError as exc:
        return {"record": route53.RECORD, "error": str(exc)}
    return {"record": route53.RECORD, "answer": answer, "ttl": ttl,
            "answers": [who.get(ip, "?") for ip in answer]}


def print_report(report: dict, console: Console | None = None) -> None:
    """Draw ``collect``'s report: services, networks, certificates, stick tables (warnings
    are the caller's to show)."""
    console = console or Console()
    table = Table(title=f"{report['project']}: designs up: {', '.join(report['designs_up']) or 'none'}")
    for col in ("service", "state", "health", "published ports"):
        table.add_column(col)
    for r in report["services"]:
        colour = "green" if r["health"] in ("healthy", "-") and r["state"] == "running" else "red"
        table.add_row(r["service"], f"[{colour}]{r['state']}[/]", r["health"], "\n".join(r["ports"]))
    console.print(table)
    nets = report["networks"]
    console.print(f"networks: internet {nets['internet']}, vpc {nets['vpc']}; "
                  f"client addresses {nets['client_addresses']}")
    dns = report.get("dns")
    if dns:
        console.print(f"DNS: {dns['record']} -> " + (dns.get("error") or
                      f"{', '.join(dns['answer']) or 'no answer'} ({', '.join(dns['answers'])}), TTL {dns['ttl']} s"))
    certs_table = Table(title="certificates")
    for col in ("certificate", "expires", "days left", "state"):
        certs_table.add_column(col)
    for r in report["certificates"]:
        colour = {"ok": "green", "expires soon": "yellow"}.get(r["state"], "red")
        certs_table.add_row(r["name"], (r["expires"] or "-")[:10], str(r["days_left"] if r["days_left"] is not None else "-"),
                            f"[{colour}]{r['state']}[/]")
    console.print(certs_table)
    for lb, entries in report["stick_tables"].items():
        sticks = Table(title=f"{lb} stick table (client IP -> server)")
        sticks.add_column("client IP")
        sticks.add_column("server")
        for ip, server in sorted(entries.items()):
            sticks.add_row(ip, server)
        console.print(sticks if entries else f"{lb} stick table: empty")
    if report.get("deregistrations"):
        deregister.print_rows(report["deregistrations"], console)
