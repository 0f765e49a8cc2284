"""LAB_NLB_STICKINESS=aws: the Lua that empties a load balancer's stick table when a target's
health or registration changes (haproxy/stick-reset.lua.j2), beside its haproxy.cfg, and the
runtime API socket it clears the table through (a path inside HAProxy's chroot)."""

from __future__ import annotations

from pathlib import Path

from .designs import LOAD_BALANCERS

TEMPLATE = "haproxy/stick-reset.lua.j2"
LUA = "stick-reset.lua"
SOCKET = "stick-reset.sock"
HAPROXY_CHROOT = "/var/lib/haproxy"  # base.cfg.j2's chroot


def options(settings, service: str) -> dict | None:
    """Where a load balancer's stick-table reset lives, or None when it keeps its pins (a
    load balancer without stickiness, or LAB_NLB_STICKINESS=haproxy)."""
    if not LOAD_BALANCERS[service].source_sticky or settings.nlb_stickiness != "aws":
        return None
    return {"lua": f"/etc/haproxy/lab/{LUA}", "socket": f"{HAPROXY_CHROOT}/{SOCKET}", "jailed_socket": f"/{SOCKET}"}


def lua(settings, service: str, env, banner: str) -> str:
    """The Lua handler that resets ``service``'s stick table (``banner``: a format with {template})."""
    return env.get_template(TEMPLATE).render(
        banner=banner.format(template=TEMPLATE), table="web", backend="web",
        socket=options(settings, service)["jailed_socket"], not_targets=["sorry"])


def files(settings, build: Path, env, banner: str) -> dict:
    """{path: bytes} of the Lua beside each haproxy.cfg that loads it."""
    return {Path(build) / "haproxy" / lb / LUA: lua(settings, lb, env, banner).encode()
            for lb in LOAD_BALANCERS if options(settings, lb)}
