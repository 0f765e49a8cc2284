"""The NLB TLS listener's client-certificate identity filters (LAB_NLB_TLS_IDENTITY_FILTERS).

AWS ("Client certificate identity filters", Network Load Balancer guide,
https://docs.aws.amazon.com/elasticloadbalancing/latest/network/client-certificate-filters.html):
a filter matches one field of the client certificate (subject-cn, subject-ou, san-dns,
san-uri) exactly or by prefix; a certificate is admitted when any filter matches; a field the
certificate lacks matches nothing; subject-cn, subject-ou and san-dns compare without case,
san-uri compares its scheme and host without case and the rest with case. The load balancer
checks the chain first, then the filters, then revocation.

How the lab keeps that order: HAProxy verifies the chain in the handshake but is told to let
a revoked leaf through it (crt-ignore-err); after the handshake a Lua fetch
(haproxy/identity-filter.lua.j2) reads the leaf's DER and answers the filters, and only then
is a revoked certificate turned away (`ssl_c_err`, the leaf's first verify error).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from . import connlog
from .designs import LOAD_BALANCERS
from .errors import SettingsError

VAR = "LAB_NLB_TLS_IDENTITY_FILTERS"
FIELDS = ("subject-cn", "subject-ou", "san-dns", "san-uri")
MATCH_TYPES = ("exact", "prefix")
MAX_VALUE = 256  # AWS: "1-256 printable ASCII characters"
TEMPLATE = "haproxy/identity-filter.lua.j2"
LUA = "identity-filter.lua"  # beside haproxy.cfg
FETCH = "lab_identity_admitted"
# tls_verify_status for a certificate no filter admits. AWS documents no connection-log code
# for it (NLB connection logs are not documented at all); the ALB's list has
# "ClientCertRejected: rejected by custom server validation", the nearest (docs/aws-parity.md).
REJECTED = "ClientCertRejected"
_EXAMPLE = f"{VAR}=subject-cn=alice,subject-ou:prefix=client"
_PRINTABLE = re.compile(r"^[\x20-\x7e]+$")
_URI_START = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class Filter:
    """One rule: admit a certificate whose ``field`` equals (or starts with) ``value``."""

    field: str
    value: str
    match: str = "exact"

    def __str__(self) -> str:
        return f"{self.field}{'' if self.match == 'exact' else ':' + self.match}={self.value}"


def parse(raw: str) -> tuple[Filter, ...]:
    """``field[:exact|prefix]=value`` rules separated by commas ("" = no filtering).

    Raises:
        SettingsError: naming the bad rule and what a good one looks like.
    """
    rules = tuple(r.strip() for r in raw.split(",") if r.strip())
    return tuple(_rule(r) for r in rules)


def _rule(rule: str) -> Filter:
    key, sep, value = rule.partition("=")
    field, _, match = key.strip().lower().partition(":")
    match = match or "exact"
    if not sep:
        raise SettingsError(f"{VAR}: {rule!r} has no '=': write field[:exact|prefix]=value, e.g. {_EXAMPLE}")
    if field not in FIELDS:
        raise SettingsError(f"{VAR}: unknown field {field!r} in {rule!r}: use {', '.join(FIELDS)}")
    if match not in MATCH_TYPES:
        raise SettingsError(f"{VAR}: unknown match type {match!r} in {rule!r}: use exact or prefix")
    if not value or len(value) > MAX_VALUE or not _PRINTABLE.match(value):
        raise SettingsError(f"{VAR}: the value in {rule!r} must be 1-{MAX_VALUE} printable ASCII "
                            "characters (as AWS allows; commas separate rules)")
    if field == "san-uri" and not _URI_START.match(value):
        raise SettingsError(f"{VAR}: a san-uri value starts with a letter and a scheme, e.g. "
                            f"san-uri=spiffe://lab.test/alice (got {value!r})")
    return Filter(field, value, match)


def text(filters) -> str:
    """The filters as LAB_NLB_TLS_IDENTITY_FILTERS would spell them ("" for none)."""
    return ",".join(str(f) for f in filters)


def options(settings, service: str) -> dict | None:
    """What the template of ``service`` needs of the NLB TLS listener's mutual-TLS options
    (None: it has no such listener); ``lua`` is None without filters."""
    if not LOAD_BALANCERS[service].identity_filters:
        return None
    filters = settings.nlb_tls_identity_filters
    return {"filters": text(filters), "proxy_identity": settings.nlb_tls_proxy_identity,
            "lua": f"/etc/haproxy/lab/{LUA}" if filters else None,
            "fetch": FETCH, "rejected": REJECTED, "status_var": connlog.STATUS_VAR}


def files(settings, build, env, banner: str) -> dict:
    """The Lua file beside each haproxy.cfg that loads it: {path: bytes}."""
    return {build / "haproxy" / lb / LUA: lua(env, settings.nlb_tls_identity_filters, banner).encode()
            for lb in LOAD_BALANCERS if (options(settings, lb) or {}).get("lua")}


def lua(env, filters, banner: str) -> str:
    """The Lua fetch that answers the filters, rendered from its template."""
    return env.get_template(TEMPLATE).render(
        banner=banner, fetch=FETCH,
        # JSON string literals are Lua string literals for printable ASCII (\" and \\ only)
        rules=[{"field": json.dumps(f.field), "value": json.dumps(f.value), "prefix": f.match == "prefix"}
               for f in filters])
