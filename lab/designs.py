"""The lab's topology as records: the load balancers, the designs (listeners) each offers,
and the services every design shares.

One record per concept: a load balancer's service, addresses, template and companions live
in its `LoadBalancer`; a design's port, what it verifies and what it forwards in its
`Design`. Settings, rendering (the HAProxy and nginx configs and the compose file), status,
readiness and compare derive from these records, and each default is written here once.
Adding a design is a record here and its templates (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import SettingsError


@dataclass(frozen=True)
class Design:
    """One front end: a listener of a load balancer, and what it stands for.

    ``mode`` is how the listener treats the client certificate, read by its load balancer's
    template: "passthrough" (TCP, TLS untouched), "off" (TLS ends here, no certificate
    asked), "verify" (checked here), "chain" (asked, not checked, forwarded whole),
    "required"/"optional" (CloudFront's viewer mTLS modes).
    """

    name: str             # the compose profile (and `lab up --design` value)
    port_setting: str     # host port setting
    host_port: int        # its default
    container_port: int
    mode: str
    target: BackendListener  # where on the backends it hands clients over
    summary: str
    verifies: str         # where the client certificate is checked
    forwards: str         # what the target learns of the client
    service: str = ""     # its load balancer's compose service (set from the LoadBalancer)

    @property
    def terminates_tls(self) -> bool:
        """Where TLS ends: at the load balancer, or on the backends."""
        return self.mode != "passthrough"

    @property
    def connection_log(self) -> bool:
        """It writes AWS-style connection logs: the load balancer ends mutual TLS (lab/connlog.py,
        CloudFront's lab/cfconnlog.py)."""
        return self.mode in ("verify", "chain", "required", "optional")


@dataclass(frozen=True)
class LoadBalancer:
    """A load balancer service: its addresses, config template and what runs beside it."""

    service: str
    template: str              # its HAProxy config, under haproxy/
    internet_host: int         # host numbers in the internet and vpc subnets
    vpc_host: int
    alias: str                 # its name on the internet network
    designs: tuple
    summary: str
    always_on: bool = False    # runs whatever designs are chosen (the NLB: the seed's answer)
    waf: bool = False          # a WAF (nginx + ModSecurity) in its network namespace: "<service>-waf"
    verifier: bool = False     # its targets ask the chain verifier
    source_sticky: bool = False  # a stick table by client address (`lab status` shows it)
    check_backend: str = "web"   # the HAProxy backend whose checks vouch for the targets ("": it sends none)
    identity_filters: bool = False  # its TLS listener takes AWS's identity filters (NLB TLS, 2026)
    log_format: str = "elb"    # its connection logs: "elb" (ALB, NLB TLS) or "cloudfront" (lab/cfconnlog.py)

    def __post_init__(self):
        # each design knows its load balancer: one Design object per design, here and in DESIGNS
        object.__setattr__(self, "designs", tuple(replace(d, service=self.service) for d in self.designs))

    @property
    def waf_service(self) -> str:
        """Its WAF's compose service ("" without one)."""
        return f"{self.service}-waf" if self.waf else ""

    @property
    def terminates_tls(self) -> bool:
        return any(d.terminates_tls for d in self.designs)

    @property
    def connection_log(self) -> bool:
        return any(d.connection_log for d in self.designs)

    @property
    def companions(self) -> tuple:
        """The services it runs besides itself."""
        return ((self.waf_service,) if self.waf else ()) + (("verifier",) if self.verifier else ())

    @property
    def services(self) -> tuple:
        return (self.service,) + self.companions


@dataclass(frozen=True)
class IdentityHeaders:
    """The HTTP headers in which a load balancer that verified the client tells the targets
    who it is (the targets believe them from that load balancer's address only)."""

    subject: str
    issuer: str
    serial: str
    validity: str
    leaf: str = ""   # the leaf certificate (URL-encoded PEM), where the load balancer sends it


@dataclass(frozen=True)
class BackendListener:
    """A listener on web1/web2: one per way a load balancer hands over a client."""

    name: str        # as /whoami reports it ("listener")
    port: int        # container side
    identity: str    # how this listener learns who the client is
    refused_by: str  # who turns a client away here (`lab compare`'s "enforced at")
    headers: IdentityHeaders | None = None  # identity in headers, believed from one load balancer


# The backends' TLS listeners: 443 takes PROXY v2 + TLS (the NLB), the diagnostic one the
# same without PROXY protocol (published on the host's loopback only, and the plain ALB's).
TLS_LISTENER = BackendListener("tls", 443, "TLS", "backend nginx, TLS")
DIRECT_LISTENER = BackendListener("direct", 8443, "TLS", "backend nginx, TLS")
RENDER_PORT = 8447  # the backends' loopback helper that renders the verifier's answers
# The application before the migration (the seed's starting point): it asks for no client
# certificate; the ALB in front says who the client is in X-Forwarded-For (`lab migrate`).
BEFORE_LISTENER = BackendListener("before", 8449, "none: the application before certificates",
                                  "nobody: no certificate is asked")


@dataclass(frozen=True)
class Backend:
    """A target (or the sorry page): its vpc address and its diagnostic port on the host."""

    name: str
    vpc_host: int
    port_setting: str = ""
    host_port: int = 0


BACKENDS = {b.name: b for b in (
    Backend("web1", 11, "LAB_WEB1_PORT", 8441),
    Backend("web2", 12, "LAB_WEB2_PORT", 8442),
)}
SORRY = Backend("sorry", 13)
VERIFIER = Backend("verifier", 14)
CLIENT_HOST = 20          # the client container's primary address (internet side)
CLIENT_EXTRA_FIRST = 100  # its extra source addresses start here


@dataclass(frozen=True)
class EdgeService:
    """A service of the DNS layer (lab/route53.py): its addresses and its port on the host."""

    name: str
    internet_host: int
    vpc_host: int           # 0: not on the vpc
    port_setting: str
    host_port: int
    container_port: int


# Route 53's stand-in (PowerDNS): answers lab.test to the clients, reads the load balancers'
# target health over the vpc. The "cdn" sorry site (the seed's S3 behind CloudFront): internet only.
DNS = EdgeService("dns", 53, 53, "LAB_DNS_PORT", 8553, 53)
CDN = EdgeService("cdn", 30, 0, "LAB_CDN_PORT", 8456, 443)


ALB_HEADERS = BackendListener("alb-headers", 8444, "X-Amzn-Mtls-* headers", "backend, headers", IdentityHeaders(
    subject="X-Amzn-Mtls-Clientcert-Subject", issuer="X-Amzn-Mtls-Clientcert-Issuer",
    serial="X-Amzn-Mtls-Clientcert-Serial-Number", validity="X-Amzn-Mtls-Clientcert-Validity",
    leaf="X-Amzn-Mtls-Clientcert-Leaf"))
ALB_CHAIN_HEADER = "X-Amzn-Mtls-Clientcert"  # passthrough: the client's whole chain
# AWS's listener attributes routing.http.request.<attribute>.header_name rename the ALB's
# mTLS headers (LAB_ALB_MTLS_HEADER_NAMES): attribute -> IdentityHeaders field ("chain": the above).
ALB_HEADER_ATTRIBUTES = {
    "x_amzn_mtls_clientcert_serial_number": "serial", "x_amzn_mtls_clientcert_issuer": "issuer",
    "x_amzn_mtls_clientcert_subject": "subject", "x_amzn_mtls_clientcert_validity": "validity",
    "x_amzn_mtls_clientcert_leaf": "leaf", "x_amzn_mtls_clientcert": "chain"}


def alb_header_names(renamed=()) -> dict:
    """The ALB's mTLS header names, field -> name, after ``renamed`` ((field, name) pairs)."""
    h = ALB_HEADERS.headers
    return {"subject": h.subject, "issuer": h.issuer, "serial": h.serial, "validity": h.validity,
            "leaf": h.leaf, "chain": ALB_CHAIN_HEADER, **dict(renamed)}


def alb_headers_listener(renamed=()) -> BackendListener:
    """ALB_HEADERS reading the renamed headers (what the backends' alb-headers listener believes)."""
    names = alb_header_names(renamed)
    del names["chain"]
    return replace(ALB_HEADERS, headers=IdentityHeaders(**names))

# CloudFront's names for the viewer's certificate (the origin reads them from CloudFront only).
CLOUDFRONT_HEADERS = BackendListener(
    "cloudfront-headers", 8448, "CloudFront-Viewer-Cert-* headers", "backend, headers", IdentityHeaders(
        subject="CloudFront-Viewer-Cert-Subject", issuer="CloudFront-Viewer-Cert-Issuer",
        serial="CloudFront-Viewer-Cert-Serial-Number", validity="CloudFront-Viewer-Cert-Validity",
        leaf="CloudFront-Viewer-Cert-Pem"))
CLOUDFRONT_FORWARDS = "CloudFront-Viewer-Cert-* headers, X-Forwarded-For, CloudFront-Viewer-Address"

LOAD_BALANCERS = {lb.service: lb for lb in (
    LoadBalancer(
        "nlb", "haproxy/nlb.cfg.j2", 10, 10, "www.lab.test", always_on=True, source_sticky=True,
        summary="HAProxy in TCP mode with source-IP stickiness and PROXY protocol v2 (an AWS NLB)",
        designs=(Design(
            "nlb", "LAB_NLB_PORT", 8443, 443, "passthrough", TLS_LISTENER,
            "NLB with a TCP listener: TLS passes through, the backends verify the client (the seed's answer)",
            verifies="backend nginx, TLS", forwards="TLS untouched; client address by PROXY v2"),)),
    LoadBalancer(
        "alb", "haproxy/alb.cfg.j2", 11, 21, "alb.lab.test", waf=True, verifier=True,
        check_backend="targets_alb",
        summary="HAProxy in HTTP mode with cookie stickiness and X-Forwarded-For (an AWS ALB), a WAF beside it",
        designs=(
            Design("alb", "LAB_ALB_PORT", 8450, 8450, "off", DIRECT_LISTENER,
                   "ALB terminating TLS, mutual TLS off, in front of the targets that demand a "
                   "certificate: it never reaches them, so everyone is refused",
                   verifies="nowhere", forwards="X-Forwarded-For"),
            Design("alb-mtls-verify", "LAB_ALB_VERIFY_PORT", 8451, 8451, "verify", ALB_HEADERS,
                   "ALB mutual TLS, verify mode (2023): the ALB checks, the backends read X-Amzn-Mtls-* headers",
                   verifies="load balancer", forwards="X-Amzn-Mtls-Clientcert-* headers, X-Forwarded-For"),
            Design("alb-mtls-passthrough", "LAB_ALB_PASSTHROUGH_PORT", 8452, 8452, "chain",
                   BackendListener("alb-chain", 8445, "chain header, verified by backend", "backend verifier"),
                   "ALB mutual TLS, passthrough (2023): the ALB forwards the chain, the backends verify it",
                   verifies="backend (the chain verifier)", forwards="X-Amzn-Mtls-Clientcert, X-Forwarded-For"),
            # on 443 of the ALB's address, where www.lab.test leads before the cutover (lab/migrate.py)
            Design("alb-before", "LAB_ALB_BEFORE_PORT", 8457, 443, "off", BEFORE_LISTENER,
                   "ALB before the migration (the seed's starting point): mutual TLS off and an "
                   "application that asks for no certificate; cookie stickiness, X-Forwarded-For",
                   verifies="nowhere: no certificate is asked", forwards="X-Forwarded-For"),
        )),
    LoadBalancer(
        "nlb-tls", "haproxy/nlb.cfg.j2", 12, 22, "nlb-tls.lab.test", source_sticky=False, identity_filters=True,
        summary="HAProxy terminating TLS with client verification, round robin (AWS has no stickiness on "
                "TLS listeners), PROXY v2 to the targets",
        designs=(Design(
            "nlb-tls-mtls", "LAB_NLB_TLS_PORT", 8453, 443, "verify",
            BackendListener("nlb-tls", 8446, "verified by the load balancer; not forwarded", "load balancer"),
            "NLB TLS listener with mutual TLS verify (2026): the NLB checks, the client IP is kept",
            verifies="load balancer", forwards="client address by PROXY v2; the identity is not forwarded"),)),
    LoadBalancer(
        # CloudFront sends its origins no health checks (docs/aws-parity.md)
        "cloudfront", "haproxy/cloudfront.cfg.j2", 15, 25, "cdn.lab.test", waf=True, check_backend="",
        log_format="cloudfront",
        summary="HAProxy in HTTP mode standing in for CloudFront with viewer mutual TLS and AWS WAF, "
                "the backends as a VPC origin",
        designs=(
            Design("cloudfront-mtls", "LAB_CLOUDFRONT_PORT", 8454, 8454, "required", CLOUDFRONT_HEADERS,
                   "CloudFront viewer mTLS, required mode (2025), with AWS WAF: the edge checks the "
                   "certificate, the origin reads CloudFront-Viewer-Cert-* headers",
                   verifies="edge (CloudFront), TLS handshake", forwards=CLOUDFRONT_FORWARDS),
            Design("cloudfront-mtls-optional", "LAB_CLOUDFRONT_OPTIONAL_PORT", 8455, 8455, "optional",
                   CLOUDFRONT_HEADERS,
                   "CloudFront viewer mTLS, optional mode: no certificate passes the edge, an invalid "
                   "one does not; the origin decides",
                   verifies="edge (CloudFront) when a certificate is sent; then the origin",
                   forwards=CLOUDFRONT_FORWARDS),
        )),
)}

DESIGNS = {d.name: d for lb in LOAD_BALANCERS.values() for d in lb.designs}
# Every backend listener, by name (each design's target, and the diagnostic one).
BACKEND_LISTENERS = {l.name: l for l in (TLS_LISTENER, DIRECT_LISTENER, *(d.target for d in DESIGNS.values()))}
# The designs a user can add to the always-on ones.
OPTIONAL = tuple(name for name, d in DESIGNS.items() if not LOAD_BALANCERS[d.service].always_on)
# The shared services, in `lab status` order: the always-on load balancers, the targets, the client.
BASE_SERVICES = (*(lb.service for lb in LOAD_BALANCERS.values() if lb.always_on),
                 *BACKENDS, SORRY.name, "client", DNS.name, CDN.name)
SERVICES = BASE_SERVICES + tuple(dict.fromkeys(
    s for lb in LOAD_BALANCERS.values() if not lb.always_on for s in lb.services))
# The services each design runs (besides the shared ones).
DESIGN_SERVICES = {name: LOAD_BALANCERS[d.service].services for name, d in DESIGNS.items()}
# The host port settings, with their defaults: every design's listener and each backend's
# diagnostic listener.
PORT_SETTINGS = {**{d.port_setting: d.host_port for d in DESIGNS.values()},
                 **{b.port_setting: b.host_port for b in BACKENDS.values()},
                 DNS.port_setting: DNS.host_port, CDN.port_setting: CDN.host_port}


def load_balancer(design: str) -> LoadBalancer:
    """The load balancer whose listener ``design`` is."""
    return LOAD_BALANCERS[DESIGNS[design].service]


def parse(raw: str) -> tuple[str, ...]:
    """LAB_DESIGNS ("alb,nlb-tls-mtls", "all" or "") -> the optional designs to run.

    Raises:
        SettingsError: naming an unknown design and the known ones.
    """
    names = [n.strip() for n in raw.replace(" ", ",").split(",") if n.strip()]
    if "all" in names:
        return OPTIONAL
    for name in names:
        if name in LOAD_BALANCERS and name not in DESIGNS:
            raise SettingsError(f"LAB_DESIGNS: {name!r} is a load balancer: choose its designs, "
                                f"{', '.join(d.name for d in LOAD_BALANCERS[name].designs)}")
        if name not in DESIGNS:
            raise SettingsError(f"LAB_DESIGNS: unknown design {name!r}: choose from {', '.join(DESIGNS)} or all")
    return tuple(n for n in OPTIONAL if n in names)
