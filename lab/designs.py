"""The load-balancer designs the lab can put in front of the same backends.

Each design is one listener of a load balancer service, started by a compose profile
(the NLB always runs: it is the seed's answer and the baseline to compare against).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SettingsError


@dataclass(frozen=True)
class Design:
    """One front end: where it listens and what it stands for."""

    name: str             # the compose profile (and `lab up --design` value)
    service: str          # the compose service of its load balancer
    port_var: str         # host port setting
    default_port: int
    container_port: int
    summary: str
    terminates_tls: bool  # where TLS ends: at the load balancer, or on the backends


DESIGNS = {d.name: d for d in (
    Design("nlb", "nlb", "LAB_NLB_PORT", 8443, 443,
           "NLB with a TCP listener: TLS passes through, the backends verify the client (the seed's answer)",
           terminates_tls=False),
    Design("alb", "alb", "LAB_ALB_PORT", 8450, 8450,
           "ALB terminating TLS, mutual TLS off (the seed's starting point): the certificate never reaches the backends",
           terminates_tls=True),
    Design("alb-mtls-verify", "alb", "LAB_ALB_VERIFY_PORT", 8451, 8451,
           "ALB mutual TLS, verify mode (2023): the ALB checks, the backends read X-Amzn-Mtls-* headers",
           terminates_tls=True),
    Design("alb-mtls-passthrough", "alb", "LAB_ALB_PASSTHROUGH_PORT", 8452, 8452,
           "ALB mutual TLS, passthrough (2023): the ALB forwards the chain, the backends verify it",
           terminates_tls=True),
    Design("nlb-tls-mtls", "nlb-tls", "LAB_NLB_TLS_PORT", 8453, 443,
           "NLB TLS listener with mutual TLS verify (2026): the NLB checks, the client IP is kept",
           terminates_tls=True),
)}
OPTIONAL = tuple(name for name in DESIGNS if name != "nlb")
# Profiles of the services that only some designs need.
ALB_DESIGNS = ("alb", "alb-mtls-verify", "alb-mtls-passthrough")
# The compose services each design runs (besides the backends, sorry page and client).
DESIGN_SERVICES = {
    "nlb": ("nlb",),
    **{name: ("alb", "alb-waf", "verifier") for name in ALB_DESIGNS},
    "nlb-tls-mtls": ("nlb-tls",),
}


def parse(raw: str) -> tuple[str, ...]:
    """LAB_DESIGNS ("alb,nlb-tls-mtls", "all" or "") -> the optional designs to run.

    Raises:
        ValueError: naming an unknown design and the known ones.
    """
    names = [n.strip() for n in raw.replace(" ", ",").split(",") if n.strip()]
    if names == ["all"]:
        return OPTIONAL
    for name in names:
        if name not in DESIGNS:
            raise SettingsError(f"LAB_DESIGNS: unknown design {name!r}: choose from {', '.join(DESIGNS)} or all")
    return tuple(n for n in OPTIONAL if n in names)
