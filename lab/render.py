"""Render every service's config from the Jinja2 templates kept beside it.

Output goes to build/<project>/ (git-ignored), which compose mounts read-only:

    haproxy/<lb>/haproxy.cfg   from haproxy/nlb.cfg.j2 or haproxy/alb.cfg.j2
    nginx/<name>/nginx.conf    from nginx/backend.conf.j2, sorry.conf.j2 or waf.conf.j2
    trust/ca.pem, crl.pem      the public trust material (a folder mount: reloads see it)
    run/<lb>/                  the load balancers' control sockets (runtime API, stats page)
    logs/<lb>/connection.log   AWS-style connection logs, appended by HAProxy (lab/connlog.py)
    compose.yaml               the topology, from compose/compose.yaml.j2 and lab/designs.py
    compose.env                the project, its profiles and what `lab` reads back

`render(..., staged=True)` writes the service configs as `<file>.new` and returns them
uncommitted, so `lab reload` can have each server check its new config before any of
them is switched (see lab/stack.py).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from .certs import HEALTH_CN, SERVER_NAME, Layout
from .pemfile import write_file
from . import connlog, designs, identity_filters, resources, route53, stick_reset
from .designs import BACKEND_LISTENERS, LOAD_BALANCERS, RENDER_PORT
from .generation import fingerprint as _generation
from .settings import BACKENDS, CHECK_TIMEOUT_S, Settings

BANNER = "Rendered by `lab` from {template}: edit the template, not this file."
COMPOSE_TEMPLATE = "compose/compose.yaml.j2"
ADMIN_DIR = "/run/lab"  # where a load balancer's control sockets are, inside its container
STAGED = ".new"


def environment() -> jinja2.Environment:
    """The Jinja2 environment: templates addressed from the repository root."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.ROOT)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["nginx_var"] = nginx_var
    return env


def nginx_var(header: str) -> str:
    """nginx's variable for a request header: X-Amzn-Mtls-Clientcert -> $http_x_amzn_mtls_clientcert."""
    return "$http_" + header.lower().replace("-", "_")


@dataclass
class Rendered:
    """Where the rendered files are and the variables compose needs.

    ``staged`` maps each service to its configs written as ``<file>.new``, which `commit`
    puts in place; ``previous_trust`` holds the files written in place (trust material, the
    stick-reset Lua) as they were, which `discard` puts back.
    """

    build_dir: Path
    env_file: Path
    env: dict
    config_hash: str
    generation: str
    compose_file: Path
    compose_text: str
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
        self.write_topology()

    def write_topology(self) -> None:
        """The compose file and its env file (what `docker compose` reads)."""
        write_file(self.compose_file, self.compose_text.encode())
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


WAF_PORT, INNER_PORT = 10080, 11080  # inside a load balancer's network namespace, a pair per listener


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
        "check": {"inter": settings.check_inter, "fall": settings.check_fall, "rise": settings.check_rise,
                  "fastinter": settings.check_fastinter, "sorry_inter": settings.sorry_check_inter},
        "check_timeout": f"{CHECK_TIMEOUT_S:g}s",
        "sorry_mode": settings.sorry,
    }


def listeners(service: str) -> list[dict]:
    """A load balancer's listeners (its designs), with the ports of their WAF hop."""
    return [{"name": d.name.replace("-", "_"), "design": d.name, "mode": d.mode, "port": d.container_port,
             "target_port": d.target.port, "target": d.target, "waf_port": WAF_PORT + i, "inner_port": INNER_PORT + i}
            for i, d in enumerate(LOAD_BALANCERS[service].designs)]


def haproxy_cfg(settings: Settings, service: str = "nlb", env: jinja2.Environment | None = None,
                generation: str = "", owner: tuple | None = None) -> str:
    """haproxy.cfg of a load balancer service (lab/designs.py LOAD_BALANCERS).

    ``owner``: (uid, gid) inside the container that gets the control sockets (default: the
    user running `lab`, which is the same user on the host unless Docker runs rootless).
    """
    if service not in LOAD_BALANCERS:
        raise ValueError(f"unknown load balancer {service!r}: choose one of {', '.join(LOAD_BALANCERS)}")
    lb = LOAD_BALANCERS[service]
    env = env or environment()
    generation = generation or _generation(settings)
    return env.get_template(lb.template).render(
        **_common(settings, lb.template, generation, owner),
        name=service.replace("-", "_"),
        lb=lb,
        listeners=listeners(service),
        # an ALB health check may use its own port: the listener that asks for no certificate
        check_port=BACKEND_LISTENERS["alb-headers"].port,
        stick_expire=settings.stick_expire,
        connlog=connlog.formats(service, settings.project) if lb.connection_log else None,
        stickiness=settings.nlb_stickiness,
        stick_reset=stick_reset.options(settings, service),
        nlb_tls=identity_filters.options(settings, service),
        target_health=route53.target_health(settings, service),
        alb_mtls={"ignore_expiry": settings.alb_ignore_client_cert_expiry,
                  "advertise_ca_names": settings.alb_advertise_ca_names,
                  "headers": designs.alb_header_names(settings.alb_mtls_header_names)},
    )


def waf_services() -> dict:
    """WAF service -> the load balancer whose network namespace it shares."""
    return {lb.waf_service: lb.service for lb in LOAD_BALANCERS.values() if lb.waf}


def nginx_conf(settings: Settings, name: str, env: jinja2.Environment | None = None,
               generation: str = "") -> str:
    """nginx.conf for a backend ("web1", "web2"), the sorry page ("sorry") or a load
    balancer's WAF ("alb-waf")."""
    wafs = waf_services()
    if name not in wafs and name not in BACKENDS and name != "sorry":
        raise ValueError(f"unknown web server {name!r}: choose one of {', '.join(BACKENDS + ('sorry',) + tuple(wafs))}")
    template = ("nginx/waf.conf.j2" if name in wafs else
                "nginx/sorry.conf.j2" if name == "sorry" else "nginx/backend.conf.j2")
    waf = name in wafs or (name in BACKENDS and settings.backend_waf)
    env = env or environment()
    http_lbs = [{"var": lb.service.replace("-", "_"), "ip": settings.lb_ips(lb.service)[1]}
                for lb in LOAD_BALANCERS.values() if not lb.always_on]
    return env.get_template(template).render(
        banner=BANNER.format(template=template),
        name=name,
        server_name=SERVER_NAME,
        health_cn=HEALTH_CN,
        trusted_proxies=[settings.nlb_vpc_ip],
        listeners=BACKEND_LISTENERS,
        render_port=RENDER_PORT,
        load_balancers=http_lbs,
        # the designs whose load balancer verified the client and names it in headers
        # (one server block per listener, however many of a load balancer's designs use it)
        header_listeners=list({d.target.name: {"listener": _renamed(d.target, settings),
                                               "lb": d.service.replace("-", "_"),
                                               "lb_ip": settings.lb_ips(d.service)[1]}
                               for d in designs.DESIGNS.values() if d.target.headers}.values()),
        alb_chain_header=designs.alb_header_names(settings.alb_mtls_header_names)["chain"],
        verifier_ip=settings.verifier_ip,
        proxy_identity=settings.nlb_tls_proxy_identity,  # the NLB TLS listener names the client in PROXY v2
        hops=[{"listener": l["design"], "waf_port": l["waf_port"], "inner_port": l["inner_port"]}
              for l in listeners(wafs[name])] if name in wafs else [],
        # leaf, intermediate, root: the longest chain the lab's clients send (carol's)
        verify_depth=2,
        waf=waf,
        waf_module=waf,
        generation=generation or _generation(settings),
        workers=1 if name == "sorry" or name in wafs else "auto",
        error_log_level="notice",
    )


def _renamed(listener, settings: Settings):
    """A backend listener as it reads its headers: the ALB's after LAB_ALB_MTLS_HEADER_NAMES."""
    if listener.name == designs.ALB_HEADERS.name:
        return designs.alb_headers_listener(settings.alb_mtls_header_names)
    return listener


def _alb_trust_store(settings: Settings, lay: Layout, folder: Path) -> dict:
    """The ALB verify listener's trust store (LAB_ALB_TRUST_STORE): one CA bundle and the CRLs
    of its CAs, as AWS takes them (alb-ca.pem, alb-crl.pem); empty until the PKI exists."""
    sources = [(lay.ca_cert, lay.crl)] + ([(lay.partner_cert, lay.partner_crl)]
                                          if settings.alb_trust_store == "lab+partner" else [])
    if not all(path.exists() for pair in sources for path in pair):
        return {}
    return {folder / "alb-ca.pem": b"".join(ca.read_bytes() for ca, _ in sources),
            folder / "alb-crl.pem": b"".join(crl.read_bytes() for _, crl in sources)}


generation = _generation  # the running servers report it: lab reload waits for it


def modsecurity_conf(env: jinja2.Environment | None = None) -> str:
    template = "nginx/modsecurity.conf.j2"
    env = env or environment()
    return env.get_template(template).render(banner=BANNER.format(template=template))


def compose_env(settings: Settings, config_hash: str) -> dict:
    """The env file beside the compose file: the project and its profiles for `docker
    compose`, and what `lab` reads back (the designs and subnets the last `up` settled)."""
    return {
        "COMPOSE_PROJECT_NAME": settings.project,
        "COMPOSE_PROFILES": ",".join(settings.profiles),
        "LAB_DESIGNS": ",".join(settings.designs),
        "LAB_INTERNET_SUBNET": str(settings.internet_subnet),
        "LAB_VPC_SUBNET": str(settings.vpc_subnet),
        "LAB_CONFIG_HASH": config_hash,
        "LAB_SORRY": settings.sorry,
    }


def compose_yaml(settings: Settings, images: dict, config_hash: str, env: jinja2.Environment | None = None) -> str:
    """The compose file: the shared services, and each load balancer from its record."""
    env = env or environment()
    # `lab down` renders without asking Docker: compose needs a name to parse, not an image
    refs = {role: images.get(role) or f"unbuilt/{role}" for role in ("haproxy", "nginx", "client", "verifier", "dns")}
    ports = settings.all_host_ports

    def host_port(var: str) -> str:
        return str(ports[var]) if ports[var] else ""  # empty: Docker picks a free port

    lbs = []
    for lb in LOAD_BALANCERS.values():
        internet_ip, vpc_ip = settings.lb_ips(lb.service)
        lbs.append({
            "service": lb.service, "summary": lb.summary, "alias": lb.alias,
            "profiles": [] if lb.always_on else [d.name for d in lb.designs],
            "internet_ip": internet_ip, "vpc_ip": vpc_ip,
            "ports": [{"host": host_port(d.port_setting), "container": d.container_port} for d in lb.designs],
            "terminates_tls": lb.terminates_tls,
            "health_cert": any(not d.terminates_tls for d in lb.designs),
            "waf": lb.waf_service, "verifier": lb.verifier,
            "connection_log": lb.connection_log,
        })
    return env.get_template(COMPOSE_TEMPLATE).render(
        banner=BANNER.format(template=COMPOSE_TEMPLATE),
        project=settings.project,
        config_hash=config_hash,
        images=refs,
        bind=settings.bind,
        build=str(settings.build_dir.resolve()),
        certs=str(Path(settings.certs_dir).resolve()),
        assets={"sorry_page": str(resources.path("nginx", "sorry").resolve())},
        load_balancers=lbs,
        waf_port=WAF_PORT,
        backends={name: {"ip": settings.backend_ip(name), "host_port": host_port(b.port_setting)}
                  for name, b in designs.BACKENDS.items()},
        direct_port=designs.DIRECT_LISTENER.port,
        sorry_ip=settings.sorry_ip,
        verifier_ip=settings.verifier_ip,
        verifier_profiles=[d.name for lb in LOAD_BALANCERS.values() if lb.verifier for d in lb.designs],
        client_ip=settings.client_ip,
        client_extra_ips=" ".join(settings.client_extra_ips),
        health_cn=HEALTH_CN,
        connlog_dir=connlog.LOG_DIR, connlog_file=connlog.LOG_FILE, connlog_fd=connlog.LOG_FD,
        internet_subnet=str(settings.internet_subnet),
        vpc_subnet=str(settings.vpc_subnet),
        **route53.compose_context(settings, host_port),
    )


def render(settings: Settings, images: dict, staged: bool = False, owner: tuple | None = None) -> Rendered:
    """Render all configs and the compose env file for ``settings``.

    Args:
        settings: the lab instance.
        images: role ("haproxy", "nginx", "client", "verifier") -> image reference (a
            missing role is named ``unbuilt/<role>``: enough for compose to find the services).
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
        if LOAD_BALANCERS[lb].connection_log:
            map_name, map_text = connlog.map_file(lb)
            configs[lb][build / "haproxy" / lb / map_name] = map_text.encode()
    for name in BACKENDS + ("sorry", *waf_services()):
        configs[name] = {build / "nginx" / name / "nginx.conf": nginx_conf(settings, name, env, gen).encode(),
                         build / "nginx" / name / "modsecurity.conf": modsecurity_conf(env).encode()}
    configs.update(route53.configs(settings, env, BANNER, gen))
    # The public trust material travels with the configs (a folder mount, so a renewed
    # CRL is seen after a reload); private keys stay in certs/.
    lay = Layout(Path(settings.certs_dir))
    trust = {build / "trust" / dst: src.read_bytes()
             for src, dst in ((lay.ca_cert, "ca.pem"), (lay.crl, "crl.pem")) if src.exists()}
    # So is the stick-reset Lua: the staged haproxy.cfg that `haproxy -c` checks loads it by name.
    trust.update(stick_reset.files(settings, build, env, BANNER))
    trust.update(identity_filters.files(settings, build, env, BANNER.format(template=identity_filters.TEMPLATE)))
    trust.update(_alb_trust_store(settings, lay, build / "trust"))
    previous = {path: (path.read_bytes() if path.exists() else None) for path in trust} if staged else {}
    for lb in LOAD_BALANCERS:  # the control sockets' folder: the operator's only
        run_dir = build / "run" / lb
        run_dir.mkdir(parents=True, exist_ok=True)
        run_dir.chmod(0o700)
    for lb in connlog.services():  # made here, so the file belongs to the user running `lab`
        log = connlog.path(build, lb)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch(exist_ok=True)
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
    rendered = Rendered(build, build / "compose.env", compose_env(settings, config_hash), config_hash, gen,
                        build / "compose.yaml", compose_yaml(settings, images, config_hash, env),
                        staged={svc: list(files) for svc, files in configs.items()} if staged else {},
                        previous_trust=previous)
    if not staged:
        rendered.write_topology()
    return rendered
