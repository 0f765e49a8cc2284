"""Would a lab subnet cut this machine off from something it needs?

Docker adds a route for every network it creates, so a lab subnet that contains this
machine's gateway, DNS server, package mirror or proxy silently captures traffic meant
for them. Documentation ranges (RFC 5737) are the lab's defaults because real networks
should not use them, but some do (sandboxes, labs, test beds); this module finds out.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from .bootstrap import APT_SOURCES, _entries

# Hosts a lab machine talks to while building and testing.
WELL_KNOWN_HOSTS = ("pypi.org", "files.pythonhosted.org", "registry-1.docker.io", "deb.debian.org")
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "PIP_INDEX_URL", "ALL_PROXY")


def _routes(proc_route: Path = Path("/proc/net/route")) -> list[tuple[str, ipaddress.IPv4Network, str]]:
    """(interface, destination network, gateway) for every IPv4 route of this machine."""
    rows = []
    try:
        lines = proc_route.read_text().splitlines()[1:]
    except OSError:
        return rows
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest, gateway, mask = (socket.inet_ntoa(struct.pack("<L", int(f, 16))) for f in
                               (fields[1], fields[2], fields[7]))
        net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        rows.append((fields[0], net, gateway))
    return rows


def _is_docker(interface: str) -> bool:
    return interface.startswith(("br-", "docker", "veth"))


def _hosts_from_config(env) -> set[str]:
    hosts = set(WELL_KNOWN_HOSTS)
    for uris, _ in _entries(APT_SOURCES):
        hosts.update(urlsplit(uri).hostname or "" for uri in uris)
    for var in PROXY_VARS:
        if env.get(var):
            hosts.add(urlsplit(env[var] if "://" in env[var] else f"http://{env[var]}").hostname or "")
    return {h for h in hosts if h}


def _resolve(host: str) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None, socket.AF_INET)})
    except (OSError, UnicodeError):
        return []


def needed_addresses(env=None, resolv_conf: Path = Path("/etc/resolv.conf")) -> dict:
    """Address -> why this machine needs it (gateway, DNS server, a mirror, a proxy)."""
    env = os.environ if env is None else env
    needed = {}
    for interface, net, gateway in _routes():
        if gateway != "0.0.0.0" and not _is_docker(interface):
            needed[gateway] = f"the gateway on {interface}"
    try:
        for line in resolv_conf.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                needed.setdefault(parts[1], "a DNS server in /etc/resolv.conf")
    except OSError:
        pass
    hosts = sorted(_hosts_from_config(env))
    with ThreadPoolExecutor(max_workers=8) as pool:  # a slow resolver costs one timeout, not eight
        for host, addresses in zip(hosts, pool.map(_resolve, hosts)):
            for address in addresses:
                needed.setdefault(address, host)
    return needed


def host_networks() -> dict:
    """Networks this machine is attached to or routes specifically (not Docker's own)."""
    return {net: interface for interface, net, _ in _routes()
            if not _is_docker(interface) and net.prefixlen > 0}


def conflicts(subnet: ipaddress.IPv4Network, needed: dict | None = None, networks: dict | None = None) -> list[str]:
    """Why ``subnet`` must not become a Docker network here ([] when it is safe)."""
    needed = needed_addresses() if needed is None else needed
    networks = host_networks() if networks is None else networks
    found = []
    for address, why in needed.items():
        try:
            if ipaddress.ip_address(address) in subnet:
                found.append(f"it holds {address} ({why})")
        except ValueError:
            continue
    for net, interface in networks.items():
        if net.overlaps(subnet):
            found.append(f"it overlaps {net}, this machine's network on {interface}")
    return found
