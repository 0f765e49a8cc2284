"""Render every service's config from the Jinja2 templates kept beside it.

Output goes to build/<project>/ (git-ignored), which compose mounts read-only:

    haproxy/haproxy.cfg        from haproxy/haproxy.cfg.j2
    nginx/<name>/nginx.conf    from nginx/backend.conf.j2 or nginx/sorry.conf.j2
    compose.env                the variables compose/compose.yaml reads
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .certs import SERVER_NAME, Layout
from .pki import write_file
from .settings import BACKENDS, DIRECT_PORT, REPO_ROOT, Settings

BANNER = "Rendered by `lab` from {template}: edit the template, not this file."
COMPOSE_FILE = REPO_ROOT / "compose" / "compose.yaml"


def environment() -> jinja2.Environment:
    """The Jinja2 environment: templates addressed from the repository root."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(REPO_ROOT)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


@dataclass(frozen=True)
class Rendered:
    """Where the rendered files are and the variables compose needs."""

    build_dir: Path
    env_file: Path
    env: dict
    config_hash: str


def haproxy_cfg(settings: Settings, env: jinja2.Environment | None = None) -> str:
    """The NLB's haproxy.cfg as text."""
    template = "haproxy/haproxy.cfg.j2"
    env = env or environment()
    return env.get_template(template).render(
        banner=BANNER.format(template=template),
        server_name=SERVER_NAME,
        stick_expire=settings.stick_expire,
        check_inter=settings.check_inter,
        check_fall=settings.check_fall,
        check_rise=settings.check_rise,
        check_timeout="1s",
        backends=[{"name": name, "ip": settings.backend_ip(name)} for name in BACKENDS],
        sorry_ip=settings.sorry_ip,
    )


def nginx_conf(settings: Settings, name: str, env: jinja2.Environment | None = None) -> str:
    """nginx.conf for a backend ("web1", "web2") or the sorry page ("sorry")."""
    template = "nginx/sorry.conf.j2" if name == "sorry" else "nginx/backend.conf.j2"
    if name != "sorry" and name not in BACKENDS:
        raise ValueError(f"unknown web server {name!r}: choose one of {', '.join(BACKENDS + ('sorry',))}")
    env = env or environment()
    return env.get_template(template).render(
        banner=BANNER.format(template=template),
        name=name,
        server_name=SERVER_NAME,
        trusted_proxies=[settings.nlb_vpc_ip],
        direct_port=None if name == "sorry" else DIRECT_PORT,
        # leaf + intermediate: a client may send a chain one CA below the trusted root
        verify_depth=2,
        error_log_level="notice",
    )


def compose_env(settings: Settings, images: dict, config_hash: str) -> dict:
    """The variables compose/compose.yaml interpolates, as strings."""

    def port(value: int) -> str:
        return str(value) if value else ""  # empty: Docker picks a free port

    env = {
        "COMPOSE_PROJECT_NAME": settings.project,
        "LAB_BUILD_DIR": str(settings.build_dir.resolve()),
        "LAB_CERTS_DIR": str(Path(settings.certs_dir).resolve()),
        "LAB_BIND": settings.bind,
        "LAB_NLB_PORT": port(settings.nlb_port),
        "LAB_STATS_PORT": port(settings.stats_port),
        "LAB_API_PORT": port(settings.api_port),
        "LAB_WEB1_PORT": port(settings.web1_port),
        "LAB_WEB2_PORT": port(settings.web2_port),
        "LAB_INTERNET_SUBNET": str(settings.internet_subnet),
        "LAB_VPC_SUBNET": str(settings.vpc_subnet),
        "LAB_NLB_PUBLIC_IP": settings.nlb_public_ip,
        "LAB_NLB_VPC_IP": settings.nlb_vpc_ip,
        "LAB_WEB1_IP": settings.backend_ip("web1"),
        "LAB_WEB2_IP": settings.backend_ip("web2"),
        "LAB_SORRY_IP": settings.sorry_ip,
        "LAB_CLIENT_IP": settings.client_ip,
        "LAB_CLIENT_EXTRA_IPS": " ".join(settings.client_extra_ips),
        "LAB_CONFIG_HASH": config_hash,
    }
    env.update({f"LAB_IMAGE_{role.upper()}": tag for role, tag in images.items()})
    return env


def render(settings: Settings, images: dict) -> Rendered:
    """Render all configs and the compose env file for ``settings``.

    Args:
        settings: the lab instance.
        images: role ("haproxy", "nginx", "client") -> image reference.

    Returns:
        Rendered, whose config_hash changes whenever a rendered file or a mounted
        certificate changes, so `compose up` recreates the affected containers.
    """
    env = environment()
    build = settings.build_dir
    files = {build / "haproxy" / "haproxy.cfg": haproxy_cfg(settings, env).encode()}
    for name in BACKENDS + ("sorry",):
        files[build / "nginx" / name / "nginx.conf"] = nginx_conf(settings, name, env).encode()
    # The public trust material travels with the configs (a folder mount, so a renewed
    # CRL is seen after `nginx -s reload`); private keys stay in certs/.
    lay = Layout(Path(settings.certs_dir))
    for src, dst in ((lay.ca_cert, "ca.pem"), (lay.crl, "crl.pem")):
        if src.exists():
            files[build / "trust" / dst] = src.read_bytes()
    digest = hashlib.sha256()
    for path, data in sorted(files.items()):
        write_file(path, data)
        digest.update(str(path.relative_to(build)).encode() + b"\0" + data)
    for mounted in (lay.server_cert, lay.health_cert):
        if mounted.exists():
            digest.update(mounted.read_bytes())
    config_hash = digest.hexdigest()[:16]
    variables = compose_env(settings, images, config_hash)
    env_file = build / "compose.env"
    # Single quotes: compose (and a POSIX shell) take the value literally.
    write_file(env_file, "".join(f"{k}='{v}'\n" for k, v in variables.items()).encode())
    return Rendered(build, env_file, variables, config_hash)
