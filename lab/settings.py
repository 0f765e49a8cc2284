"""The lab's settings: defaults, LAB_* environment overrides, validation, address plan.

Every value a user can change is read here and checked once; a bad value raises
SettingsError (a ValueError) naming the variable and an example of a good one.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import designs as designs_mod
from . import identity_filters, resources
from .errors import SettingsError
from .pki import KEY_TYPES
from .values import (_port, _int, _subnet, _flag, _time_ms, _time, _delay, _path, _header_names, _ttl, _PROJECT_RE)

REPO_ROOT = resources.CHECKOUT  # the source checkout (tests and docs refer to it)

DEFAULTS = {
    "LAB_PROJECT": "mtls-lab",
    "LAB_BIND": "127.0.0.1",
    # the host ports: every design's listener and the backends' diagnostic ones
    **{var: str(port) for var, port in designs_mod.PORT_SETTINGS.items()},
    # Documentation ranges (RFC 5737): never a user's real network.
    "LAB_INTERNET_SUBNET": "203.0.113.0/24",
    "LAB_VPC_SUBNET": "198.51.100.0/24",
    "LAB_STICK_EXPIRE": "30m",
    "LAB_CLIENT_IPS": "16",
    # every 2 s while a target is fully up, every 500 ms once a check failed or while it is
    # down: a dead target is DOWN within 4.5 s (docs/reliability.md), at half the checks of 1 s
    "LAB_CHECK_INTER": "2s",
    "LAB_CHECK_FALL": "2",
    "LAB_CHECK_RISE": "2",
    "LAB_WAIT_TIMEOUT": "120",
    # an NLB target group's deregistration_delay.timeout_seconds and
    # deregistration_delay.connection_termination.enabled, AWS's defaults (research/nlb.md §4)
    "LAB_DEREGISTRATION_DELAY": "300s",
    "LAB_DEREGISTRATION_CONNECTION_TERMINATION": "off",
    "LAB_NLB_STICKINESS": "aws",
    # ALB mutual-TLS listener options, off as AWS's defaults (docs/aws-parity.md)
    "LAB_ALB_IGNORE_CLIENT_CERT_EXPIRY": "off",
    "LAB_ALB_ADVERTISE_CA_NAMES": "off",
    "LAB_ALB_MTLS_HEADER_NAMES": "",
    "LAB_ALB_TRUST_STORE": "lab",
    # NLB TLS listener mutual TLS: identity filters (none: every trusted certificate) and
    # the lab's own option of naming the client to the targets in PROXY v2 (AWS sends nothing)
    "LAB_NLB_TLS_IDENTITY_FILTERS": "",
    "LAB_NLB_TLS_PROXY_IDENTITY": "off",
    # `lab dashboard`'s port on 127.0.0.1 (its option --port)
    "LAB_DASHBOARD_PORT": "8480",
    "LAB_CHECK_FASTINTER": "500ms",
    # the sorry page matters only once every target is down: checked rarely while it is up
    "LAB_SORRY_CHECK_INTER": "10s",
    # the DNS layer (lab/route53.py): the failover record's TTL (AWS's alias records take the
    # target's, 60 s for a load balancer: docs/aws-parity.md), and where the sorry page lives
    "LAB_DNS_TTL": "5",
    "LAB_SORRY": "dns",
}

BACKENDS = tuple(designs_mod.BACKENDS)
SERVICES = designs_mod.SERVICES

BIND_CHOICES = ("127.0.0.1", "0.0.0.0")  # the designs' listeners; diagnostics stay on loopback
# The NLB's stick table on a target's health change or (de)registration: "aws" resets it, as
# AWS says an NLB might (docs/aws-parity.md); "haproxy" keeps re-pinned clients where they are.
STICKINESS_CHOICES = ("aws", "haproxy")
# The ALB verify listener's trust store: the lab CA (its chain and CRLs), or also the partner CA's
ALB_TRUST_STORES = ("lab", "lab+partner")
# LAB_NLB_TLS_PROXY_IDENTITY: "off" as AWS (the targets learn the address only), "cn" the lab's
# option: the client certificate's CN as a PROXY v2 TLV (PP2_SUBTYPE_SSL_CN)
PROXY_IDENTITY_CHOICES = ("off", "cn")
# The sorry page: "dns" (the seed: Route 53 fails over to the cdn sorry site, the NLB fails
# open) or "lb" (the lab's shortcut: a backup server inside the load balancers).
SORRY_CHOICES = ("dns", "lb")

# The client container's extra addresses have roles (ClientPool): at least six users, a
# probe address for `lab compare` and one for the demos.
CLIENT_IPS_MIN = 8
CHECK_TIMEOUT_S = 1.0  # HAProxy's `timeout check` (haproxy/base.cfg.j2)


@dataclass(frozen=True)
class ClientPool:
    """The client container's source addresses, named by what they are used for."""

    nat: str      # its primary address: "many users behind one NAT" in demos and tests
    extra: tuple  # LAB_CLIENT_IPS more, one user each

    @property
    def probe(self) -> str:
        """`lab compare`'s client."""
        return self.extra[-1]

    @property
    def demo(self) -> str:
        """The demos' client."""
        return self.extra[-2]

    @property
    def users(self) -> tuple:
        """Distinct users, each behind an address of their own (spread, fault load)."""
        return self.extra[:-2]


@dataclass(frozen=True)
class Settings:
    """One lab instance: its compose project, ports, networks and folders."""

    project: str = DEFAULTS["LAB_PROJECT"]
    bind: str = DEFAULTS["LAB_BIND"]
    # host port setting -> port (0: Docker picks), for every listener the lab can publish
    ports: tuple = tuple(designs_mod.PORT_SETTINGS.items())
    designs: tuple = ()          # optional designs to run besides the NLB (lab/designs.py)
    designs_auto: bool = True    # not chosen by the user: `lab` reuses what the last `up` ran
    backend_waf: bool = False    # ModSecurity on the backends too (the seed had none there)
    internet_subnet: ipaddress.IPv4Network = ipaddress.IPv4Network(DEFAULTS["LAB_INTERNET_SUBNET"])
    vpc_subnet: ipaddress.IPv4Network = ipaddress.IPv4Network(DEFAULTS["LAB_VPC_SUBNET"])
    stick_expire: str = DEFAULTS["LAB_STICK_EXPIRE"]
    client_ips: int = int(DEFAULTS["LAB_CLIENT_IPS"])
    check_inter: str = DEFAULTS["LAB_CHECK_INTER"]
    check_fall: int = int(DEFAULTS["LAB_CHECK_FALL"])
    check_rise: int = int(DEFAULTS["LAB_CHECK_RISE"])
    wait_timeout: int = int(DEFAULTS["LAB_WAIT_TIMEOUT"])
    deregistration_delay: float = _delay("LAB_DEREGISTRATION_DELAY", DEFAULTS["LAB_DEREGISTRATION_DELAY"])
    deregistration_termination: bool = _flag("LAB_DEREGISTRATION_CONNECTION_TERMINATION",
                                             DEFAULTS["LAB_DEREGISTRATION_CONNECTION_TERMINATION"])
    nlb_stickiness: str = DEFAULTS["LAB_NLB_STICKINESS"]
    key_type: str | None = None
    # True when the subnet is the default, not the user's choice: `lab up` may then move
    # it if it would capture an address this machine needs (see lab/netcheck.py).
    internet_auto: bool = False
    vpc_auto: bool = False
    home: Path = field(default_factory=resources.default_home)
    # ALB mutual-TLS listener options (AWS's MutualAuthentication and listener attributes)
    alb_ignore_client_cert_expiry: bool = _flag("", DEFAULTS["LAB_ALB_IGNORE_CLIENT_CERT_EXPIRY"])
    alb_advertise_ca_names: bool = _flag("", DEFAULTS["LAB_ALB_ADVERTISE_CA_NAMES"])
    alb_mtls_header_names: tuple = ()  # (IdentityHeaders field or "chain", header name): renamed only
    alb_trust_store: str = DEFAULTS["LAB_ALB_TRUST_STORE"]
    nlb_tls_identity_filters: tuple = ()  # identity_filters.Filter rules, any admits
    nlb_tls_proxy_identity: str = DEFAULTS["LAB_NLB_TLS_PROXY_IDENTITY"]
    dns_ttl: int = int(DEFAULTS["LAB_DNS_TTL"])
    sorry: str = DEFAULTS["LAB_SORRY"]
    sorry_auto: bool = True      # not chosen by the user: `lab` reuses what the last `up` ran
    certs_dir: Path = field(default=None)  # type: ignore[assignment]
    dashboard_port: int = int(DEFAULTS["LAB_DASHBOARD_PORT"])
    check_fastinter: str = DEFAULTS["LAB_CHECK_FASTINTER"]
    sorry_check_inter: str = DEFAULTS["LAB_SORRY_CHECK_INTER"]

    def __post_init__(self):
        if not _PROJECT_RE.fullmatch(self.project):
            raise SettingsError(f"LAB_PROJECT={self.project!r}: use lowercase letters, digits, '-' or '_', e.g. mtls-lab")
        if self.bind not in BIND_CHOICES:  # the lab's own tools reach it on 127.0.0.1
            raise SettingsError(f"LAB_BIND={self.bind!r}: use 127.0.0.1 (this machine only) "
                                "or 0.0.0.0 (every interface, e.g. for a class)")
        if self.internet_subnet.overlaps(self.vpc_subnet):
            raise SettingsError(f"LAB_INTERNET_SUBNET {self.internet_subnet} overlaps LAB_VPC_SUBNET "
                             f"{self.vpc_subnet}: give them separate ranges")
        ports = [p for p in self.all_host_ports.values() if p]
        if len(ports) != len(set(ports)):
            raise SettingsError(f"the LAB_*_PORT settings must all differ (got {ports}); 0 lets Docker pick")
        if self.nlb_stickiness not in STICKINESS_CHOICES:
            raise SettingsError(f"LAB_NLB_STICKINESS={self.nlb_stickiness!r}: use aws (reset the pins when a "
                                "target's health or registration changes) or haproxy (keep them)")
        if self.key_type is not None and self.key_type not in KEY_TYPES:
            raise SettingsError(f"LAB_KEY_TYPE={self.key_type!r}: use one of {', '.join(KEY_TYPES)}")
        if self.alb_trust_store not in ALB_TRUST_STORES:
            raise SettingsError(f"LAB_ALB_TRUST_STORE={self.alb_trust_store!r}: use {' or '.join(ALB_TRUST_STORES)} "
                                "(the lab CA, or also the partner CA)")
        if self.nlb_tls_proxy_identity not in PROXY_IDENTITY_CHOICES:
            raise SettingsError(f"LAB_NLB_TLS_PROXY_IDENTITY={self.nlb_tls_proxy_identity!r}: use off (as AWS: "
                                "the targets learn the client's address only) or cn (the lab's option: "
                                "the certificate's CN in the PROXY v2 header)")
        if self.sorry not in SORRY_CHOICES:
            raise SettingsError(f"LAB_SORRY={self.sorry!r}: use dns (Route 53 fails over to the cdn sorry "
                                "site, as in the seed) or lb (a backup server in the load balancer)")
        if self.certs_dir is None:
            object.__setattr__(self, "certs_dir", Path(self.home) / "certs")
        _path("LAB_HOME", self.home)  # also --workdir, and the checkout when it is the default
        _path("LAB_CERTS_DIR", self.certs_dir)

    @classmethod
    def from_env(cls, env=None, **overrides) -> "Settings":
        """Settings from LAB_* variables (``os.environ`` by default), then keyword overrides.

        Raises:
            ValueError: naming the variable and a valid example.
        """
        env = os.environ if env is None else env

        def get(var):
            return env.get(var, DEFAULTS.get(var, ""))

        home = Path(env["LAB_HOME"]) if env.get("LAB_HOME") else resources.default_home()
        values = dict(
            project=get("LAB_PROJECT"),
            bind=get("LAB_BIND"),
            ports=tuple((var, _port(var, get(var))) for var in designs_mod.PORT_SETTINGS),
            designs=designs_mod.parse(env.get("LAB_DESIGNS", "")),
            designs_auto="LAB_DESIGNS" not in env,
            backend_waf=_flag("LAB_BACKEND_WAF", env.get("LAB_BACKEND_WAF", "")),
            internet_subnet=_subnet("LAB_INTERNET_SUBNET", get("LAB_INTERNET_SUBNET")),
            vpc_subnet=_subnet("LAB_VPC_SUBNET", get("LAB_VPC_SUBNET")),
            stick_expire=_time("LAB_STICK_EXPIRE", get("LAB_STICK_EXPIRE")),
            client_ips=_int("LAB_CLIENT_IPS", get("LAB_CLIENT_IPS"), CLIENT_IPS_MIN, 64),
            check_inter=_time("LAB_CHECK_INTER", get("LAB_CHECK_INTER")),
            check_fall=_int("LAB_CHECK_FALL", get("LAB_CHECK_FALL"), 1, 10),
            check_rise=_int("LAB_CHECK_RISE", get("LAB_CHECK_RISE"), 1, 10),
            wait_timeout=_int("LAB_WAIT_TIMEOUT", get("LAB_WAIT_TIMEOUT"), 10, 3600),
            deregistration_delay=_delay("LAB_DEREGISTRATION_DELAY", get("LAB_DEREGISTRATION_DELAY")),
            deregistration_termination=_flag("LAB_DEREGISTRATION_CONNECTION_TERMINATION",
                                             get("LAB_DEREGISTRATION_CONNECTION_TERMINATION")),
            nlb_stickiness=get("LAB_NLB_STICKINESS").strip().lower(),
            key_type=env.get("LAB_KEY_TYPE") or None,
            internet_auto="LAB_INTERNET_SUBNET" not in env,
            vpc_auto="LAB_VPC_SUBNET" not in env,
            home=home,
            certs_dir=Path(env["LAB_CERTS_DIR"]) if env.get("LAB_CERTS_DIR") else None,  # None: home/certs
            alb_ignore_client_cert_expiry=_flag("LAB_ALB_IGNORE_CLIENT_CERT_EXPIRY",
                                                get("LAB_ALB_IGNORE_CLIENT_CERT_EXPIRY")),
            alb_advertise_ca_names=_flag("LAB_ALB_ADVERTISE_CA_NAMES", get("LAB_ALB_ADVERTISE_CA_NAMES")),
            alb_mtls_header_names=_header_names("LAB_ALB_MTLS_HEADER_NAMES", get("LAB_ALB_MTLS_HEADER_NAMES")),
            alb_trust_store=get("LAB_ALB_TRUST_STORE").strip(),
            nlb_tls_identity_filters=identity_filters.parse(get("LAB_NLB_TLS_IDENTITY_FILTERS")),
            nlb_tls_proxy_identity=get("LAB_NLB_TLS_PROXY_IDENTITY").strip().lower(),
            dashboard_port=_port("LAB_DASHBOARD_PORT", get("LAB_DASHBOARD_PORT")),
            check_fastinter=_time("LAB_CHECK_FASTINTER", get("LAB_CHECK_FASTINTER")),
            sorry_check_inter=_time("LAB_SORRY_CHECK_INTER", get("LAB_SORRY_CHECK_INTER")),
            dns_ttl=_ttl("LAB_DNS_TTL", get("LAB_DNS_TTL")),
            sorry=get("LAB_SORRY").strip().lower(),
            sorry_auto="LAB_SORRY" not in env,
        )
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    @property
    def all_host_ports(self) -> dict:
        """Variable -> host port, for every listener the lab can publish (0: Docker picks)."""
        return dict(self.ports)

    def port(self, var: str) -> int:
        """The host port of setting ``var`` (e.g. LAB_NLB_PORT)."""
        return self.all_host_ports[var]

    @property
    def host_ports(self) -> dict:
        """Variable -> host port for what this instance runs: the always-on designs, the
        backends, and every listener of the load balancers its chosen designs start (one
        service publishes all of its listeners)."""
        services = {designs_mod.DESIGNS[d].service for d in self.designs}
        skipped = {d.port_setting for d in designs_mod.DESIGNS.values()
                   if d.name in designs_mod.OPTIONAL and d.service not in services}
        return {var: port for var, port in self.ports if var not in skipped}

    @property
    def profiles(self) -> tuple:
        """Compose profiles to enable: the chosen designs."""
        return tuple(sorted(self.designs))

    # -- folders -------------------------------------------------------------
    @property
    def build_dir(self) -> Path:
        """Rendered configs for this project (git-ignored)."""
        return Path(self.home) / "build" / self.project

    # -- address plan --------------------------------------------------------
    def _host(self, net: ipaddress.IPv4Network, n: int) -> str:
        return str(net.network_address + n)

    @property
    def internet_gateway(self) -> str:
        return self._host(self.internet_subnet, 1)

    @property
    def nlb_public_ip(self) -> str:
        return self.lb_ips("nlb")[0]

    @property
    def nlb_vpc_ip(self) -> str:
        return self.lb_ips("nlb")[1]

    @property
    def client_ip(self) -> str:
        return self._host(self.internet_subnet, designs_mod.CLIENT_HOST)

    @property
    def check_inter_seconds(self) -> float:
        """LAB_CHECK_INTER in seconds."""
        return (_time_ms(self.check_inter) or 1000) / 1000

    def check_round_seconds(self, server: str) -> float:
        """The longest a load balancer goes without checking ``server`` while it is up, plus
        the check's own timeout: the sorry page has its own, longer interval."""
        inter = self.sorry_check_inter if server == designs_mod.SORRY.name else self.check_inter
        return (_time_ms(inter) or 1000) / 1000 + CHECK_TIMEOUT_S

    @property
    def detection_bound_seconds(self) -> float:
        """How long a dead target can still be taken for UP: the wait for its next check
        (inter), then ``fall`` failed checks each up to the check timeout, the ones after
        the first ``fastinter`` apart."""
        fastinter = (_time_ms(self.check_fastinter) or 1000) / 1000
        return (self.check_inter_seconds + self.check_fall * CHECK_TIMEOUT_S
                + (self.check_fall - 1) * fastinter)

    @property
    def client_pool(self) -> "ClientPool":
        """The client container's source addresses, by role."""
        return ClientPool(self.client_ip, tuple(self.client_extra_ips))

    @property
    def client_extra_ips(self) -> list[str]:
        """Extra source addresses the client container holds, to act as many clients."""
        return [self._host(self.internet_subnet, designs_mod.CLIENT_EXTRA_FIRST + i) for i in range(self.client_ips)]

    def backend_ip(self, name: str) -> str:
        return self._host(self.vpc_subnet, designs_mod.BACKENDS[name].vpc_host)

    @property
    def sorry_ip(self) -> str:
        return self._host(self.vpc_subnet, designs_mod.SORRY.vpc_host)

    @property
    def verifier_ip(self) -> str:
        return self._host(self.vpc_subnet, designs_mod.VERIFIER.vpc_host)

    def lb_ips(self, service: str) -> tuple[str, str]:
        """(internet address, vpc address) of a load balancer service."""
        lb = designs_mod.LOAD_BALANCERS[service]
        return self._host(self.internet_subnet, lb.internet_host), self._host(self.vpc_subnet, lb.vpc_host)
