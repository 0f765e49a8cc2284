"""`lab reload`: re-render, have each server check its staged config, switch, and wait
until every reloaded server serves the new generation.

One reload at a time per project (a lock file in its build folder): reloads share the
staged files. Stack.reload delegates here.
"""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path

from . import cdncert, docker_env, images, render, route53
from .containers import compose_container
from .designs import CDN, DNS, LOAD_BALANCERS, SERVICES
from .errors import NotReached, StackError
from .wait import wait_for

# What `reload` refreshes by default (when running): servers holding certificates, a CA or a
# CRL, and the load balancers' WAFs (their configs follow the listeners).
NGINX_SERVICES = ("web1", "web2", "sorry", *render.waf_services(), CDN.name)
HAPROXY_SERVICES = tuple(LOAD_BALANCERS)
# The DNS server restarts: its start loads the rendered zone afresh (dns/start.sh), which also
# undoes record changes made through its API (`lab migrate` puts them back itself).
RESTARTED = (DNS.name,)
RELOADABLE = NGINX_SERVICES + HAPROXY_SERVICES + RESTARTED

NGINX_CONF = "/etc/nginx/lab/nginx.conf"
HAPROXY_CFG = "/etc/haproxy/lab/haproxy.cfg"


def _nginx_generation(container, service: str = "web1") -> str:
    """The X-Lab-Config header an nginx container answers its own health check with."""
    if service in render.waf_services():
        argv = ["curl", "-s", "--max-time", "2", "-o", "/dev/null", "-D", "-",
                f"http://127.0.0.1:{render.WAF_PORT}/waf-healthz"]
    elif service == CDN.name:  # no PROXY protocol: the clients come straight from the internet
        argv = ["curl", "-sk", "--max-time", "2", "-o", "/dev/null", "-D", "-", "https://127.0.0.1:443/"]
    else:
        argv = ["curl", "-sk", "--max-time", "2", "-o", "/dev/null", "-D", "-", "--haproxy-protocol",
                "https://127.0.0.1:443/healthz"]
    _, out = container.exec_run(argv)
    for line in out.decode(errors="replace").splitlines():
        if line.lower().startswith("x-lab-config:"):
            return line.split(":", 1)[1].strip()
    return ""


@contextlib.contextmanager
def reload_lock(build_dir: Path):
    """One reload (or render for it) at a time per project: they share the staged files."""
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".reload.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _dns_generation(stack) -> str:
    """The generation TXT record the DNS server answers (its rendered zone's)."""
    try:
        return route53.generation(route53.host_port(stack))
    except StackError:
        return ""


def _haproxy_generation(api) -> str:
    """LAB_GENERATION as the serving HAProxy worker has it (`show env`)."""
    answer = api.command("show env LAB_GENERATION").strip()
    return answer.split("=", 1)[1] if answer.startswith("LAB_GENERATION=") else ""


def _changed(paths) -> bool:
    """Whether a staged file says more than a new generation (its generation line aside)."""
    def meaning(path: Path) -> list:
        return [line for line in path.read_text().splitlines() if "generation" not in line] if path.exists() else []
    return any(meaning(Path(p)) != meaning(Path(str(p) + render.STAGED)) for p in paths)


def _check_config(service: str, container) -> None:
    """Have the running server check its staged config (``<file>.new``) before the switch.

    Raises:
        StackError: with the server's own words.
    """
    if service in RESTARTED:  # the staged config and zone, loaded into a scratch database (dns/check.sh)
        rc, out = container.exec_run(["sh", "/usr/local/sbin/lab-dns-check",
                                      f"{route53.CONFIG_DIR}/pdns.conf{render.STAGED}",
                                      f"{route53.CONFIG_DIR}/{route53.ZONE}.zone{render.STAGED}"])
    if service in NGINX_SERVICES:
        rc, out = container.exec_run(["nginx", "-t", "-q", "-c", NGINX_CONF + render.STAGED])
    elif service not in RESTARTED:
        rc, out = container.exec_run(["haproxy", "-c", "-f", HAPROXY_CFG + render.STAGED])
    if rc != 0:
        words = " | ".join(line.strip() for line in out.decode(errors="replace").splitlines() if line.strip())
        raise StackError(f"{service} refused the new configuration, so nothing was reloaded and the "
                         f"running lab is unchanged: {words[-600:]}")


def reload(stack, ui=None, dc=None, services=None) -> None:
    """Re-render the configs and trust bundle, then reload the servers in place:
    ``services``, or every running one that holds certificates, a CA or a CRL (the
    backends, the sorry page, each design's load balancer and the ALB's WAF).

    Every server to reload first checks its new config (`nginx -t`, `haproxy -c`); if
    one refuses it, nothing is switched, the trust files are put back, and the running
    lab is unchanged. After the signal, each server must report the new generation (a
    fingerprint of the settings, templates, CA, CRL and certificates) three times in a
    row before this returns: a CRL written before the reload is enforced when it returns.
    Running servers not named in ``services`` keep their configs; stopped ones get the
    new configs for their next start.

    HAProxy reloads seamlessly (master-worker, SIGUSR2; HAProxy 3.0 hands the stick table
    to the new worker through its local peer (docs/reliability.md), established connections
    stay with the old worker).
    nginx re-reads certificates and the CRL (`nginx -s reload`); its old workers
    finish requests in flight but close idle keep-alive connections.

    Args:
        stack: the lab (a lab.stack.Stack).
        ui: where to say what was reloaded (None: silent).
        dc: a Docker client (default: a new one).
        services: the servers to reload (default: every running one in RELOADABLE).

    Raises:
        StackError: naming the server that refused its config (with its words), that
            is not running, or that did not switch to the new one.
    """
    dc = dc or docker_env.client()
    with reload_lock(stack.settings.build_dir):
        states = {row.get("Service"): row.get("State") for row in stack.compose.ps()}
        running = {svc for svc, state in states.items() if state == "running"}
        if services is None:
            services = tuple(s for s in RELOADABLE if s in running)
            if not services:
                raise StackError(f"{stack.settings.project} is not running: start it with `lab up`")
        idle = [s for s in services if s not in running]
        if idle:
            raise StackError(f"cannot reload {', '.join(idle)}: {states.get(idle[0]) or 'not started'} "
                             f"(`lab status`; `lab fault restore` undoes a fault)")
        containers = {s: compose_container(dc, stack.settings.project, s) for s in services}
        cdncert.ensure(stack.settings.certs_dir)  # a new CA (`lab certs --force`): the sorry site's too
        rendered = render.render(stack.settings, images.image_refs(dc), staged=True,
                                 owner=docker_env.socket_owner(dc))
        try:
            for service, container in containers.items():
                _check_config(service, container)
        except BaseException:
            rendered.discard()
            raise
        # the DNS server restarts only for a new zone or config: its records carry no
        # certificate, and a restart would undo a moved alias and pause name resolution
        unchanged = {s for s in RESTARTED if s in containers and not _changed(rendered.staged.get(s, ()))}
        rendered.commit(set(services) | (set(SERVICES) - running))
        for service in unchanged:
            del containers[service]
        services = tuple(s for s in services if s not in unchanged)
        for service, container in containers.items():
            if service in NGINX_SERVICES:
                rc, out = container.exec_run(["nginx", "-s", "reload", "-c", NGINX_CONF])
                if rc != 0:
                    raise StackError(f"{service}: nginx -s reload failed: "
                                     f"{out.decode(errors='replace').strip()}")
            elif service in RESTARTED:
                container.restart(timeout=2)
            else:
                container.kill(signal="SIGUSR2")
        for service, container in containers.items():  # the signals only ask: wait for the answer
            _wait_generation(stack, service, container, rendered.generation)
    if ui:
        ui.ok(f"{stack.settings.project}: configs re-rendered; {', '.join(services)} serve "
              f"generation {rendered.generation}")


def _wait_generation(stack, service: str, container, wanted: str, streak: int = 3) -> None:
    """Wait until ``service`` answers with generation ``wanted`` ``streak`` times in a row
    (an old worker may still take a connection or two while it hands over)."""
    if service in NGINX_SERVICES:
        live = lambda: _nginx_generation(container, service)  # noqa: E731
    elif service in RESTARTED:
        live = lambda: _dns_generation(stack)  # noqa: E731
    else:
        live = lambda: _haproxy_generation(stack.runtime_api(service, timeout=2))  # noqa: E731
    seen = []

    def switched() -> bool:
        seen.append(live())
        return seen[-streak:] == [wanted] * streak

    try:
        wait_for(switched, 15, interval=0.1, what=f"{service} serving generation {wanted}")
    except NotReached:
        raise StackError(f"{service} did not switch to the new configuration (it still serves "
                         f"{seen[-1] if seen else 'an unknown one'}): see `lab logs {service}`") from None
    if service in RESTARTED:
        _settle_dns(stack)


def _settle_dns(stack) -> None:
    """A restarted DNS server's first answers are its health checker's guess: wait for one
    round of its checks (the answer the primary while its targets serve, as they usually do)."""
    try:
        route53.wait_answer(route53.host_port(stack), stack.settings.lb_ips(route53.PRIMARY)[0],
                            2 * route53.health_interval(stack.settings) + 2)
    except StackError:
        pass  # the targets are down (a fault): the sorry site is then the right answer
