"""The DNS layer: Route 53's failover record pair for www.lab.test, on PowerDNS.

The `dns` service is PowerDNS Authoritative (Debian's pdns-server; the rendered zone file is
loaded into its LMDB backend at each start, and changed after that through its HTTP API,
lab/dnsapi.py). www.lab.test is one LUA record, `ifurlextup`: the primary (an alias to the
active front end: the NLB, or the ALB before the cutover drill) while its target health
endpoint answers 200, which HAProxy's `monitor fail if { nbsrv(<backend>) lt 1 }` gives while
the target group has a healthy target (Route 53's "evaluate target health", read from the load
balancer itself); else the secondary, the `cdn` sorry site. The secondary has no health check,
as an alias to CloudFront cannot evaluate target health: Route 53 then answers it whenever the
primary is unhealthy. PowerDNS's checker asks every LAB_CHECK_INTER (rounded up to whole seconds).

Files rendered here (build/<project>/): dns/pdns.conf, dns/lab.test.zone and
nginx/cdn/nginx.conf. Queries from this machine go to the published UDP port (LAB_DNS_PORT).
"""

from __future__ import annotations

import math
import time

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from .designs import CDN, DNS, LOAD_BALANCERS
from .errors import NotReached, StackError
from .wait import wait_for

ZONE = "lab.test"
RECORD = "www.lab.test"
PRIMARY = "nlb"                  # the failover record's primary: an alias to this load balancer
ALIAS_TARGETS = ("nlb", "alb")   # what the primary can be an alias to (the cutover drill moves it)
TARGET_HEALTH_PORT = 8405        # a load balancer's target health, on its vpc address only
TARGET_HEALTH_URI = "/target-health"
CDN_HEALTH_PORT = 80             # the sorry site's plain-HTTP health check (an S3 website endpoint is HTTP)
CONFIG_DIR = "/etc/powerdns/lab"
TEMPLATES = {"pdns.conf": "dns/pdns.conf.j2", "lab.test.zone": "dns/zone.j2"}
API_PORT = 8081                  # PowerDNS's webserver and HTTP API, on the DNS container's loopback
API_DIR = "/run/lab-dns"         # where its start script writes the API key (dns/start.sh)
# The secondary's "check": a record without a health check is always healthy (Route 53), so
# it asks the DNS server's own webserver, which answers while the DNS server runs.
ALWAYS_HEALTHY = f"http://127.0.0.1:{API_PORT}/"
CDN_TEMPLATE = "nginx/cdn.conf.j2"


def _host(net, n: int) -> str:
    return str(net.network_address + n)


def dns_ips(settings) -> tuple[str, str]:
    """The DNS server's (internet, vpc) addresses."""
    return _host(settings.internet_subnet, DNS.internet_host), _host(settings.vpc_subnet, DNS.vpc_host)


def cdn_ip(settings) -> str:
    """The sorry site's address (internet side)."""
    return _host(settings.internet_subnet, CDN.internet_host)


def who(settings) -> dict:
    """address -> what answers there: the load balancers an alias can lead to, and the sorry site."""
    return {settings.lb_ips(lb)[0]: lb for lb in ALIAS_TARGETS} | {cdn_ip(settings): CDN.name}


def health_interval(settings) -> int:
    """PowerDNS's health-check interval, whole seconds: LAB_CHECK_INTER rounded up."""
    return max(1, math.ceil(settings.check_inter_seconds))


def target_health(settings, service: str) -> dict | None:
    """Where a load balancer reports its target health to the DNS server (None: it does not):
    its vpc address only, so no client sees it (the control-plane tests list it)."""
    if service not in ALIAS_TARGETS:
        return None
    backend = LOAD_BALANCERS[service].check_backend
    return {"bind": f"{settings.lb_ips(service)[1]}:{TARGET_HEALTH_PORT}", "uri": TARGET_HEALTH_URI,
            "backend": backend}


def record(settings, primary_service: str = PRIMARY) -> dict:
    """The failover pair, its primary an alias to ``primary_service``, as the zone template,
    the HTTP API (lab/dnsapi.py) and the reports show it."""
    primary_ip, primary_vpc = settings.lb_ips(primary_service)
    primary = {"ip": primary_ip, "service": primary_service,
               "check": f"http://{primary_vpc}:{TARGET_HEALTH_PORT}{TARGET_HEALTH_URI}"}
    secondary = {"ip": cdn_ip(settings), "service": CDN.name, "check": ALWAYS_HEALTHY}
    # ifurlextup: the first group with an address whose URL answers 200 (PowerDNS's docs,
    # lua-records/functions.rst); every check has a second to answer, as HAProxy's do.
    groups = ", ".join(f"{{['{r['ip']}']='{r['check']}'}}" for r in (primary, secondary))
    return {"name": RECORD, "ttl": settings.dns_ttl, "primary": primary, "secondary": secondary,
            "lua": f"ifurlextup({{{groups}}}, {{timeout=1}})"}


def configs(settings, env, banner: str, generation: str) -> dict:
    """service -> {path: bytes}: the DNS server's config and zone, the sorry site's nginx.conf."""
    build = settings.build_dir
    internet_ip, _ = dns_ips(settings)
    context = {"config_dir": CONFIG_DIR, "zone": ZONE, "record": record(settings), "ns_ip": internet_ip,
               "api_port": API_PORT, "api_dir": API_DIR,
               "interval": health_interval(settings), "generation": generation,
               "names": {lb.alias.split(".")[0]: settings.lb_ips(lb.service)[0] for lb in LOAD_BALANCERS.values()
                         if lb.alias.endswith("." + ZONE) and lb.alias != RECORD}}
    out = {"dns": {build / "dns" / name: env.get_template(template).render(
        banner=banner.format(template=template), **context).encode() for name, template in TEMPLATES.items()}}
    out["cdn"] = {build / "nginx" / "cdn" / "nginx.conf": env.get_template(CDN_TEMPLATE).render(
        banner=banner.format(template=CDN_TEMPLATE), name=CDN.name, server_name=RECORD, generation=generation,
        workers=1, error_log_level="notice", waf_module=False, health_port=CDN_HEALTH_PORT).encode()}
    return out


def compose_context(settings, host_port) -> dict:
    """What compose/compose.yaml.j2 needs of the DNS layer (``host_port``: setting -> published)."""
    internet_ip, vpc_ip = dns_ips(settings)
    return {"dns": {"internet_ip": internet_ip, "vpc_ip": vpc_ip, "host_port": host_port(DNS.port_setting),
                    "api_dir": API_DIR,
                    "record": RECORD, "port": DNS.container_port},
            "cdn": {"ip": cdn_ip(settings), "host_port": host_port(CDN.port_setting), "port": CDN.container_port}}


def sorry_source(settings, service: str) -> str:
    """Where a load balancer's clients get a sorry page when every target is down (`lab compare`)."""
    lb = LOAD_BALANCERS[service]
    if not lb.check_backend:
        return "none: no health checks, origin errors pass through"
    if settings.sorry == "lb":
        return "in the LB: a backup server (the lab's shortcut)"
    # LAB_SORRY=dns: every checking load balancer fails open, as AWS's NLB and ALB do
    if service == PRIMARY:
        return f"DNS failover: {RECORD} -> the cdn sorry site; the NLB fails open"
    if service in ALIAS_TARGETS:  # the primary before the cutover (`lab migrate`)
        return f"none: it fails open; DNS fails over from it while {RECORD} is its alias (lab migrate)"
    return "none: it fails open, and no DNS record fails over from it"


# -- asking it -------------------------------------------------------------------------

def host_port(stack, protocol: str = "udp") -> int:
    """The DNS server's published port on this machine."""
    proc = stack.compose.run("port", "--protocol", protocol, DNS.name, str(DNS.container_port), check=False)
    out = proc.stdout.strip()
    if proc.returncode != 0 or not out:
        raise StackError(f"{DNS.name}:{DNS.container_port}/{protocol} is not published: is the stack up? (`lab status`)")
    return int(out.rsplit(":", 1)[1])


def cdn_port(stack) -> int:
    """The sorry site's published port on this machine."""
    return stack.compose.port(CDN.name, CDN.container_port)


def _ask(port: int, name: str, rdtype, server: str, timeout: float):
    """One query to the DNS server. Raises StackError when it does not answer."""
    query = dns.message.make_query(name, rdtype)
    try:
        return dns.query.udp(query, server, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError) as exc:
        raise StackError(f"the DNS server at {server}:{port} does not answer {name} ({exc}): "
                         "is the stack up? (`lab status`)") from None


def resolve(port: int, name: str = RECORD, server: str = "127.0.0.1", timeout: float = 2.0) -> tuple[list, int]:
    """One A query to the DNS server: (addresses, TTL). Raises StackError when it does not answer."""
    reply = _ask(port, name, dns.rdatatype.A, server, timeout)
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.A:
            return sorted(r.address for r in rrset), rrset.ttl
    return [], 0


class CachedAnswer:
    """www.lab.test's answer kept for its TTL, as a caching resolver keeps it (Docker's own
    resolver keeps nothing): resolved again once the TTL has run out."""

    def __init__(self, port: int):
        self.port = port
        self.address, self.resolved_at, self.expires = "", 0.0, 0.0

    def resolve(self) -> None:
        answer, ttl = resolve(self.port)
        self.address, self.resolved_at = (answer or [""])[0], time.monotonic()
        self.expires = self.resolved_at + ttl

    def current(self) -> str:
        """The address to connect to now ("" when the DNS server gave none)."""
        if time.monotonic() >= self.expires:
            self.resolve()
        return self.address


def wait_answer(port: int, address: str, timeout: float) -> float:
    """Wait until the DNS server answers www.lab.test with ``address``; the seconds it took.

    Raises:
        StackError: naming what it answers instead.
    """
    started = time.monotonic()
    try:
        wait_for(lambda: resolve(port, timeout=1)[0] == [address], timeout, interval=0.1,
                 what=f"the DNS server answering {address} for {RECORD}")
    except NotReached:
        raise StackError(f"the DNS server still answers {resolve(port)[0]} for {RECORD}, not {address}: "
                         "its health checks may see that load balancer's targets down (`lab status`)") from None
    return round(time.monotonic() - started, 2)


def generation(port: int, server: str = "127.0.0.1") -> str:
    """The configuration generation the DNS server's zone carries (its TXT record)."""
    reply = _ask(port, f"generation.{ZONE}", dns.rdatatype.TXT, server, 1)
    for rrset in reply.answer:
        for r in rrset:
            return b"".join(r.strings).decode()
    return ""


def ready(stack, reasons: dict) -> dict:
    """Readiness of the DNS layer (lab/readiness.py): the DNS server answers www.lab.test with
    the primary once the targets serve (its health checker's first answer is a guess), and the
    sorry site answers over TLS without a client certificate."""
    from .client import Host, request  # the clients layer sits above this one

    found = {}
    s = stack.settings
    if reasons.get(DNS.name, "").startswith("exited"):
        found[DNS.name] = (f"{reasons[DNS.name]}: PowerDNS refused to start (its log lines below say why; "
                           "`lab images --rebuild` rebuilds its image)")
    if DNS.name in reasons and not reasons[DNS.name]:
        try:
            answer, _ = resolve(host_port(stack), timeout=1)
            targets_up = not any(reasons.get(b) for b in ("web1", "web2"))
            if not answer:
                found[DNS.name] = f"no answer for {RECORD}"
            elif targets_up and answer != [s.lb_ips(PRIMARY)[0]]:
                found[DNS.name] = f"answers {answer} for {RECORD}; waiting for its health checks to see {PRIMARY}"
        except StackError as exc:
            found[DNS.name] = str(exc)
    if CDN.name in reasons and not reasons[CDN.name]:
        try:
            page = request(Host(s.certs_dir), None, port=cdn_port(stack), path="/", timeout=2)
            if page.backend != CDN.name:
                found[CDN.name] = f"no sorry page yet ({page.status or page.error})"
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            found[CDN.name] = f"no answer ({type(exc).__name__})"
    return found
