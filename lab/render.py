"""Render every service's config from the Jinja2 templates kept beside it.

Output goes to build/<project>/ (git-ignored), which compose mounts read-only:

    haproxy/<lb>/haproxy.cfg   from haproxy/nlb.cfg.j2 or haproxy/alb.cfg.j2
    nginx/<name>/nginx.conf    from nginx/backend.conf.j2, sorry.conf.j2 or waf.conf.j2
    trust/ca.pem, crl.pem      the public trust material (a folder mount: reloads see it)
    run/<lb>/                  the load balancers' control sockets (runtime API, stats page)
    compose.env                the variables compose/compose.yaml reads

`render(..., staged=True)` writes the service configs as `<file>.new` and returns them
uncommitted, so `lab reload` can have each server check its new config before any of
them is switched (see lab/stack.py).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import jinja2

from .certs import HEALTH_CN, SERVER_NAME, Layout
from .pemfile import write_file
from .designs import DESIGNS
from . import resources
from .settings import BACKEND_PORTS, BACKENDS, DIRECT_PORT, Settings

BANNER = "Rendered by `lab` from {template}: edit the template, not this file."
COMPOSE_FILE = resources.path("compose", "compose.yaml")
LOAD_BALANCERS = ("nlb", "nlb-tls", "alb")
ADMIN_DIR = "/run/lab"  # where a load balancer's control sockets are, inside its container
STAGED = ".new"


def environment() -> jinja2.Environment:
    """The Jinja2 environment: templates addressed from the repository root."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.ROOT)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


@dataclass
class Rendered:
    """Where the rendered files are and the variables compose needs.

    ``staged`` maps each service to its configs written as ``<file>.new``, which `commit`
    puts in place; ``previous_trust`` holds the trust files as they were, which `discard`
    puts back.
    """

    build_dir: Path
    env_file: Path
    env: dict
    config_hash: str
    generation: str
    staged: dict = field(default_factory=dict)
    previous_trust: dict = field(default_factory=dict)

    def commit(self, services=None) -> None:
        """Put the staged configs of ``services`` (default: all) in place (atomic renames),
        drop the others' (their servers keep what they run), then write the env file."""
        for service, paths in self.staged.items():
            for path in paths:
                if services is None or service in services:
                    os.replace(_staged(path), path)
                else:
                    _staged(path).unlink(missing_ok=True)
        self.staged = {}
        _write_env_file(self.env_file, self.env)

    def discard(self) -> None:
        """Remove the staged configs and put the trust files back: nothing changed."""
        for paths in self.staged.values():
            for path in paths:
                _staged(path).unlink(missing_ok=True)
        self.staged = {}
        for path, data in self.previous_trust.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                write_file(path, data)
        self.previous_trust = {}


def _staged(path: Path) -> Path:
    return path.with_name(path.name + STAGED)


def _write_env_file(path: Path, variables: dict) -> None:
    # Single quotes: compose (and a POSIX shell) take the value literally.
    write_file(path, "".join(f"{k}='{v}'\n" for k, v in variables.items()).encode())


# The ALB's three listeners: (design, mTLS mode, bind options, backend listener port).
ALB_LISTENERS = (
    ("alb", "off", "", DIRECT_PORT),
    ("alb-mtls-verify", "verify",
     " verify required ca-file /etc/lab/trust/ca.pem crl-file /etc/lab/trust/crl.pem",
     BACKEND_PORTS["alb_headers"]),
    ("alb-mtls-passthrough", "passthrough",
     " verify optional ca-file /etc/lab/trust/ca.pem ca-ignore-err all crt-ignore-err all no-tls-tickets",
     BACKEND_PORTS["alb_chain"]),
)
WAF_PORT, INNER_PORT = 10080, 11080  # inside the ALB's network namespace, one pair per listener


def _common(settings: Settings, template: str, generation: str, owner: tuple | None = None) -> dict:
    uid, gid = owner or (os.getuid(), os.getgid())
    return {
        "banner": BANNER.format(template=template),
        "generation": generation,
        "admin": {"dir": ADMIN_DIR, "uid": uid, "gid": gid},
        "health_cn": HEALTH_CN,
        "server_name": SERVER_NAME,
        "backends": [{"name": name, "ip": settings.backend_ip(name)} for name in BACKENDS],
        "sorry_ip": settings.sorry_ip,
        "check": {"inter": settings.check_inter, "fall": settings.check_fall, "rise": settings.check_rise},
        "check_timeout": "1s",
    }


def alb_listeners() -> list[dict]:
    """The ALB's listeners with the ports of their WAF hop and target group."""
    return [{"name": design.replace("-", "_"), "design": design, "mode": mode,
             "port": DESIGNS[design].container_port, "bind_opts": bind_opts,
             "target_port": target_port, "waf_port": WAF_PORT + i, "inner_port": INNER_PORT + i}
            for i, (design, mode, bind_opts, target_port) in enumerate(ALB_LISTENERS)]


def haproxy_cfg(settings: Settings, service: str = "nlb", env: jinja2.Environment | None = None,
                generation: str = "", owner: tuple | None = None) -> str:
    """haproxy.cfg of a load balancer service: "nlb", "nlb-tls" or "alb".

    ``owner``: (uid, gid) inside the container that gets the control sockets (default: the
    user running `lab`, which is the same user on the host unless Docker runs rootless).
    """
    env = env or environment()
    generation = generation or _generation(settings)
    if service == "alb":
        template = "haproxy/alb.cfg.j2"
        return env.get_template(template).render(**_common(settings, template, generation, owner),
                                                 listeners=alb_listeners(), check_port=BACKEND_PORTS["alb_headers"])
    if service not in ("nlb", "nlb-tls"):
        raise ValueError(f"unknown load balancer {service!r}: choose nlb, nlb-tls or alb")
    template = "haproxy/nlb.cfg.j2"
    tls = service == "nlb-tls"
    return env.get_template(template).render(
        **_common(settings, template, generation, owner),
        name=service.replace("-", "_"),
        tls_listener=tls,
        target_port=BACKEND_PORTS["nlb_tls"] if tls else 443,
        stick_expire=settings.stick_expire,
    )


def nginx_conf(settings: Settings, name: str, env: jinja2.Environment | None = None,
               generation: str = "") -> str:
    """nginx.conf for a backend ("web1", "web2"), the sorry page ("sorry") or the ALB's WAF ("alb-waf")."""
    templates = {"sorry": "nginx/sorry.conf.j2", "alb-waf": "nginx/waf.conf.j2"}
    if name not in templates and name not in BACKENDS:
        raise ValueError(f"unknown web server {name!r}: choose one of {', '.join(BACKENDS + tuple(templates))}")
    template = templates.get(name, "nginx/backend.conf.j2")
    waf = name == "alb-waf" or (name in BACKENDS and settings.backend_waf)
    env = env or environment()
    return env.get_template(template).render(
        banner=BANNER.format(template=template),
        name=name,
        server_name=SERVER_NAME,
        health_cn=HEALTH_CN,
        trusted_proxies=[settings.nlb_vpc_ip],
        direct_port=DIRECT_PORT,
        ports=BACKEND_PORTS,
        alb_ip=settings.lb_ips("alb")[1],
        nlb_tls_ip=settings.lb_ips("nlb-tls")[1],
        verifier_ip=settings.verifier_ip,
        hops=[{"listener": l["design"], "waf_port": l["waf_port"], "inner_port": l["inner_port"]}
              for l in alb_listeners()],
        # leaf, intermediate, root: the longest chain the lab's clients send (carol's)
        verify_depth=2,
        waf=waf,
        waf_module=waf,
        generation=generation or _generation(settings),
        workers=1 if name in ("sorry", "alb-waf") else "auto",
        error_log_level="notice",
    )


def _mounted(settings: Settings) -> list[Path]:
    """The certificate files the servers load (a change needs a reload to take effect); a key
    is renewed with its certificate, so the certificates stand for them."""
    lay = Layout(Path(settings.certs_dir))
    return [lay.ca_cert, lay.crl, lay.server_cert, lay.health_cert]


def _generation(settings: Settings) -> str:
    """A fingerprint of everything a rendering depends on: settings, templates, and the CA,
    CRL and certificates the servers load. The running servers report theirs, so `lab
    reload` knows when the new one serves."""
    # what the user chose and what the lab inferred render alike: fingerprint the values only
    values = replace(settings, designs_auto=False, internet_auto=False, vpc_auto=False)
    digest = hashlib.sha256(repr(values).encode())
    for template in sorted(resources.path("nginx").glob("*.j2")) + sorted(resources.path("haproxy").glob("*.j2")):
        digest.update(template.read_bytes())
    for path in _mounted(settings):
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()[:12]


generation = _generation


def modsecurity_conf(env: jinja2.Environment | None = None) -> str:
    template = "nginx/modsecurity.conf.j2"
    env = env or environment()
    return env.get_template(template).render(banner=BANNER.format(template=template))


def compose_env(settings: Settings, images: dict, config_hash: str) -> dict:
    """The variables compose/compose.yaml interpolates, as strings."""

    def port(value: int) -> str:
        return str(value) if value else ""  # empty: Docker picks a free port

    env = {
        "COMPOSE_PROJECT_NAME": settings.project,
        "COMPOSE_PROFILES": ",".join(settings.profiles),
        "LAB_DESIGNS": ",".join(settings.designs),
        "LAB_BUILD_DIR": str(settings.build_dir.resolve()),
        "LAB_CERTS_DIR": str(Path(settings.certs_dir).resolve()),
        "LAB_BIND": settings.bind,
        **{var: port(value) for var, value in settings.all_host_ports.items()},
        "LAB_INTERNET_SUBNET": str(settings.internet_subnet),
        "LAB_VPC_SUBNET": str(settings.vpc_subnet),
        "LAB_NLB_PUBLIC_IP": settings.nlb_public_ip,
        "LAB_NLB_VPC_IP": settings.nlb_vpc_ip,
        "LAB_ALB_PUBLIC_IP": settings.lb_ips("alb")[0],
        "LAB_ALB_VPC_IP": settings.lb_ips("alb")[1],
        "LAB_NLB_TLS_PUBLIC_IP": settings.lb_ips("nlb-tls")[0],
        "LAB_NLB_TLS_VPC_IP": settings.lb_ips("nlb-tls")[1],
        "LAB_WEB1_IP": settings.backend_ip("web1"),
        "LAB_WEB2_IP": settings.backend_ip("web2"),
        "LAB_SORRY_IP": settings.sorry_ip,
        "LAB_VERIFIER_IP": settings.verifier_ip,
        "LAB_CLIENT_IP": settings.client_ip,
        "LAB_CLIENT_EXTRA_IPS": " ".join(settings.client_extra_ips),
        "LAB_HEALTH_CN": HEALTH_CN,
        "LAB_CONFIG_HASH": config_hash,
    }
    env.update({f"LAB_IMAGE_{role.upper()}": tag for role, tag in images.items()})
    return env


def render(settings: Settings, images: dict, staged: bool = False, owner: tuple | None = None) -> Rendered:
    """Render all configs and the compose env file for ``settings``.

    Args:
        settings: the lab instance.
        images: role ("haproxy", "nginx", "client") -> image reference.
        staged: write the service configs as ``<file>.new`` and leave the env file alone
            until ``Rendered.commit()``; the trust material is written in place, and
            ``Rendered.discard()`` puts the old back.
        owner: (uid, gid) for the control sockets (see ``haproxy_cfg``).

    Returns:
        Rendered, whose config_hash changes whenever a rendered file or a mounted
        certificate changes, so `compose up` recreates the affected containers.
    """
    env = environment()
    build = settings.build_dir
    gen = _generation(settings)
    configs: dict = {}  # service -> {path: bytes}
    for lb in LOAD_BALANCERS:
        configs[lb] = {build / "haproxy" / lb / "haproxy.cfg": haproxy_cfg(settings, lb, env, gen, owner).encode()}
    for name in BACKENDS + ("sorry", "alb-waf"):
        configs[name] = {build / "nginx" / name / "nginx.conf": nginx_conf(settings, name, env, gen).encode(),
                         build / "nginx" / name / "modsecurity.conf": modsecurity_conf(env).encode()}
    # The public trust material travels with the configs (a folder mount, so a renewed
    # CRL is seen after a reload); private keys stay in certs/.
    lay = Layout(Path(settings.certs_dir))
    trust = {build / "trust" / dst: src.read_bytes()
             for src, dst in ((lay.ca_cert, "ca.pem"), (lay.crl, "crl.pem")) if src.exists()}
    previous = {path: (path.read_bytes() if path.exists() else None) for path in trust} if staged else {}
    for lb in LOAD_BALANCERS:  # the control sockets' folder: the operator's only
        run_dir = build / "run" / lb
        run_dir.mkdir(parents=True, exist_ok=True)
        run_dir.chmod(0o700)
    every = {path: data for files in configs.values() for path, data in files.items()}
    digest = hashlib.sha256()
    for path, data in sorted({**every, **trust}.items()):
        digest.update(str(path.relative_to(build)).encode() + b"\0" + data)
    for path, data in trust.items():
        write_file(path, data)
    for path, data in every.items():
        write_file(_staged(path) if staged else path, data)
    # every rendered config carries the generation, which covers the mounted certificates
    config_hash = digest.hexdigest()[:16]
    variables = compose_env(settings, images, config_hash)
    rendered = Rendered(build, build / "compose.env", variables, config_hash, gen,
                        staged={svc: list(files) for svc, files in configs.items()} if staged else {},
                        previous_trust=previous)
    if not staged:
        _write_env_file(rendered.env_file, variables)
    return rendered
