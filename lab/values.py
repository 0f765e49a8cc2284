"""One LAB_* value at a time: parse it and check it, or raise SettingsError naming the
variable and an example of a good value (lab/settings.py reads them all once)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from . import designs as designs_mod
from .errors import SettingsError

_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_HAPROXY_TIME_RE = re.compile(r"^[1-9][0-9]*(ms|s|m|h|d)$")


def _port(var: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{var}={raw!r} is not a port number: use 1-65535, or 0 for any free port") from None
    if not 0 <= value <= 65535:
        raise SettingsError(f"{var}={value} is out of range: use 1-65535, or 0 for any free port")
    return value


def _int(var: str, raw: str, lo: int, hi: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{var}={raw!r} is not a whole number: use {lo}-{hi}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{var}={value} is out of range: use {lo}-{hi}")
    return value


def _subnet(var: str, raw: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(raw, strict=True)
    except ValueError as exc:
        raise SettingsError(f"{var}={raw!r} is not an IPv4 subnet ({exc}): use e.g. 203.0.113.0/24") from None
    if net.prefixlen > 24:
        raise SettingsError(f"{var}={raw} is too small: the lab needs a /24 or larger, e.g. 203.0.113.0/24")
    if net.is_loopback or net.is_multicast or net.is_link_local:
        raise SettingsError(f"{var}={raw} is a reserved range: use e.g. 203.0.113.0/24")
    return net


def _flag(var: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("", "0", "off", "no", "false"):
        return False
    if value in ("1", "on", "yes", "true"):
        return True
    raise SettingsError(f"{var}={raw!r}: use on or off")


_TIME_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
HAPROXY_MAX_MS = 2**31 - 1  # HAProxy keeps timers in ms in a signed 32-bit int: above is "timer overflow"


def _time_ms(raw: str) -> int | None:
    """Milliseconds in a HAProxy time such as "30m", or None when it is not one."""
    m = _HAPROXY_TIME_RE.fullmatch(raw)
    return int(raw[:m.start(1)]) * _TIME_UNIT_MS[m.group(1)] if m else None


def _time(var: str, raw: str) -> str:
    ms = _time_ms(raw)
    if ms is None:
        raise SettingsError(f"{var}={raw!r} is not a HAProxy time: use a number and a unit, e.g. 30m, 90s, 2h")
    if ms > HAPROXY_MAX_MS:
        raise SettingsError(f"{var}={raw} is too long: HAProxy's maximum is 24d "
                            f"({HAPROXY_MAX_MS} ms), use e.g. 30m, 12h or 24d")
    return raw


DEREGISTRATION_DELAY_MAX_S = 3600  # AWS's range is 0-3600 seconds


def _delay(var: str, raw: str) -> float:
    """Seconds in a HAProxy time from 0 to AWS's 3600 s ("0" or "0s": at once)."""
    ms = 0 if raw in ("0", "0s") else _time_ms(raw)
    if ms is None or ms > DEREGISTRATION_DELAY_MAX_S * 1000:
        raise SettingsError(f"{var}={raw!r}: use a time from 0s to {DEREGISTRATION_DELAY_MAX_S}s "
                            "(AWS's range), e.g. 300s, 5m or 3s")
    return ms / 1000


_PATH_BAD_CHARS = (":", "'", '"', "$", "\n")


def _path(var: str, value) -> None:
    """Refuse a folder compose's `src:dst:ro` volumes or the quoted env file cannot carry."""
    path = Path(value)
    candidates = [str(path.absolute())]
    try:
        candidates.append(str(path.resolve()))
    except (OSError, RuntimeError):  # a symlink loop: the absolute path is all there is
        pass
    for text in candidates:
        for ch in _PATH_BAD_CHARS:
            if ch in text:
                example = ("LAB_CERTS_DIR=~/mtls-lab/certs" if var == "LAB_CERTS_DIR" else
                           "LAB_HOME=~/mtls-lab or --workdir ~/mtls-lab (the default is the checkout, else ./.lab)")
                raise SettingsError(f"{var}={text!r} contains {ch!r}, which compose volumes and the lab's "
                                    f"env file cannot carry: choose a folder without it, e.g. {example}")


# nginx reads a request header as $http_<name>, "-" turned into "_" (and drops names with "_").
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")
# Headers the ALB or the backends already mean something by: never an identity header.
_RESERVED_HEADERS = {"host", "cookie", "connection", "content-length", "transfer-encoding",
                     "x-forwarded-for", "x-forwarded-proto", "x-forwarded-port"}


def _header_names(var: str, raw: str) -> tuple:
    """LAB_ALB_MTLS_HEADER_NAMES ("subject=X-Client-Subject,...") -> ((field, header name), ...).

    A key is AWS's listener attribute (routing.http.request.x_amzn_mtls_clientcert_subject.header_name)
    or its short form (subject); lab/designs.py ALB_HEADER_ATTRIBUTES lists them.
    """
    attributes = designs_mod.ALB_HEADER_ATTRIBUTES
    short = {a.removeprefix("x_amzn_mtls_clientcert").lstrip("_") or "clientcert": a for a in attributes}
    renamed = {}
    for item in (i.strip() for i in raw.split(",") if i.strip()):
        key, sep, name = (part.strip() for part in item.partition("="))
        attribute = key.removeprefix("routing.http.request.").removesuffix(".header_name")
        attribute = short.get(attribute, attribute)
        if not sep or attribute not in attributes:
            raise SettingsError(f"{var}: {item!r} is not <attribute>=<header name>: use one of "
                                f"{', '.join(short)}, e.g. {var}=subject=X-Client-Subject")
        if len(name) > 64 or not _HEADER_NAME_RE.fullmatch(name) or name.lower() in _RESERVED_HEADERS:
            raise SettingsError(f"{var}: {name!r} is not a header name the lab can use: letters, digits "
                                "and '-' (no '_', at most 64), not Host/Cookie/X-Forwarded-*, e.g. X-Client-Subject")
        renamed[attributes[attribute]] = name
    names = [n.lower() for n in {**designs_mod.alb_header_names(), **renamed}.values()]
    if len(names) != len(set(names)):
        raise SettingsError(f"{var}={raw!r} gives two headers the same name: give each its own")
    return tuple(sorted(renamed.items()))




DNS_TTL_MAX_S = 86400  # a day: far beyond any failover record's (Route 53 alias records: 60 s)


def _ttl(var: str, raw: str) -> int:
    """A DNS TTL in whole seconds, 1 to a day ("5" or "5s")."""
    text = raw.strip().lower()
    text = text[:-1] if text.endswith("s") else text
    if not text.isdigit() or not 1 <= int(text) <= DNS_TTL_MAX_S:
        raise SettingsError(f"{var}={raw!r}: use whole seconds from 1 to {DNS_TTL_MAX_S}, e.g. 5 "
                            "(AWS gives alias records to a load balancer 60)")
    return int(text)
