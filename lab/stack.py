"""Drive the lab's compose project: up (healthy or torn down), down, ps, port, logs;
`reload` is lab/reload.py's.

Compose runs through its CLI with argument lists (as testcontainers' DockerCompose
does); readiness comes from lab/readiness.py (the load balancers' own health checks and real
requests), not from Docker's health checks, which are slow on purpose (they cost CPU).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from . import cdncert, certs, designs, docker_env, images, pemfile, readiness, render
from . import reload as reload_mod
from .designs import DESIGN_SERVICES, DESIGNS, DIRECT_LISTENER, SERVICES
from .errors import CommandFailed, LabError, StackError
from .proc import run, stream
from .runtime_api import RuntimeAPI
from .settings import Settings


def read_env_file(path: Path) -> dict:
    """The variables of a compose env file written by render (KEY='value' lines)."""
    values = {}
    for line in Path(path).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value[1:-1] if value[:1] == value[-1:] == "'" else value
    return values


SUBNET_ATTEMPTS = 3


def _pool_overlap(exc: CommandFailed) -> bool:
    return "Pool overlaps" in exc.stdout or "overlaps with other one" in exc.stdout


def _known_image_refs() -> dict:
    """The image tags this checkout builds, or none without an engine (compose can still
    parse a compose file whose images are named `unbuilt/<role>`)."""
    try:
        return images.image_refs(docker_env.client())
    except (LabError, docker.errors.DockerException):
        return {}


def _clean_env() -> dict:
    """The caller's environment minus compose/lab variables: the env file is the truth."""
    return {k: v for k, v in os.environ.items()
            if not (k.startswith("LAB_") or k.startswith("COMPOSE_"))}


@dataclass
class Compose:
    """`docker compose` bound to one project, compose file and env file."""

    project: str
    env_file: Path
    compose_file: Path

    def argv(self, *args: str) -> list[str]:
        return ["docker", "compose", "-f", str(self.compose_file), "-p", self.project,
                "--env-file", str(self.env_file), *args]

    def run(self, *args: str, check: bool = True, timeout: float = 300):
        """One compose command; a hung engine ends in a timeout, not a hung `lab`.

        Raises:
            StackError: when it does not finish within ``timeout`` seconds.
        """
        try:
            return run(self.argv(*args), env=_clean_env(), check=check, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StackError(f"`docker compose {' '.join(args[:2])}` did not finish within {timeout:.0f} s: "
                             "check `docker info` and `lab status`") from None

    def call(self, *args: str) -> int:
        """Run in the foreground, output straight to the terminal (e.g. `logs --follow`)."""
        return subprocess.call(self.argv(*args), env=_clean_env())

    def stream(self, *args: str, on_line, hint: str = "", timeout: float | None = None):
        return stream(self.argv(*args), on_line, env=_clean_env(), hint=hint, timeout=timeout)

    def ps(self, all_: bool = True) -> list[dict]:
        """One dict per container (compose's JSON: Service, State, Health, Publishers...)."""
        args = ["ps", "--format", "json"] + (["-a"] if all_ else [])
        out = self.run(*args).stdout.strip()
        if not out:
            return []
        if out.startswith("["):  # compose < 2.21 printed one array
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def port(self, service: str, port: int) -> int:
        """The host port published for ``service``'s container port."""
        proc = self.run("port", service, str(port), check=False)
        out = proc.stdout.strip()
        if proc.returncode != 0 or not out:
            raise StackError(f"{service}:{port} is not published: is the stack up? (`lab status`)")
        return int(out.rsplit(":", 1)[1])

    def logs(self, *services: str, tail: int = 50) -> str:
        proc = self.run("logs", "--no-color", "--tail", str(tail), *services, check=False)
        return proc.stdout + proc.stderr


class Stack:
    """A lab instance: settings, rendered configs and its compose project."""

    def __init__(self, settings: Settings):
        self.compose = Compose(settings.project, settings.build_dir / "compose.env", settings.build_dir / "compose.yaml")
        self.settings = self._recorded(settings)
        if self.compose.env_file.exists() and not self.compose.compose_file.exists():
            self._write_topology()  # rendered by a lab before 0.3.0, which kept no compose file

    def _write_topology(self) -> None:
        """The compose file for these settings, with the images this checkout builds (the
        configs stay as rendered: `lab up` or `lab reload` renders them)."""
        recorded = read_env_file(self.compose.env_file)
        text = render.compose_yaml(self.settings, _known_image_refs(), recorded.get("LAB_CONFIG_HASH", "none"))
        pemfile.write_file(self.compose.compose_file, text.encode())

    def _recorded(self, settings: Settings) -> Settings:
        """Default subnets as the last `up` settled them (recorded in the env file)."""
        if not (settings.internet_auto or settings.vpc_auto or settings.designs_auto or settings.sorry_auto) \
                or not self.compose.env_file.exists():
            return settings
        recorded = read_env_file(self.compose.env_file)
        changes = {}
        if settings.designs_auto and recorded.get("LAB_DESIGNS"):
            changes["designs"] = designs.parse(recorded["LAB_DESIGNS"])
        if settings.sorry_auto and recorded.get("LAB_SORRY"):
            changes["sorry"] = recorded["LAB_SORRY"]
        for field, var, auto in (("internet_subnet", "LAB_INTERNET_SUBNET", settings.internet_auto),
                                 ("vpc_subnet", "LAB_VPC_SUBNET", settings.vpc_auto)):
            if auto and recorded.get(var):
                changes[field] = ipaddress.IPv4Network(recorded[var])
        return settings.with_(**changes) if changes else settings

    # -- lifecycle ------------------------------------------------------------
    def prepare(self, ui, *, dc=None, rebuild: bool = False) -> dict:
        """Everything before `up`: engine and compose checks, PKI, images, configs.

        Returns:
            The compose variables that were written to the env file.
        """
        dc = dc or docker_env.client()
        docker_env.ensure_compose()
        report = certs.ensure_pki(self.settings.certs_dir, key_type=self.settings.key_type)
        if report.issued:
            ui.ok(f"PKI in {report.root}: issued {', '.join(report.issued)}")
        elif report.crl_signed:
            ui.ok(f"PKI in {report.root}: CRL re-signed")
        certs.require_pki(self.settings.certs_dir)
        if cdncert.ensure(self.settings.certs_dir):
            ui.ok("PKI: issued the sorry site's server certificate (certs/cdn)")
        refs = images.ensure_images(dc, ui, rebuild=rebuild)
        return render.render(self.settings, refs, owner=docker_env.socket_owner(dc)).env

    def up(self, ui, *, keep_on_failure: bool = False, rebuild: bool = False) -> None:
        """Bring the stack up and wait until every service serves (lab/readiness.py: the load
        balancers' own health checks and real requests, not Docker's).

        On failure the logs are attached to the error and the project is removed
        (`down -v`) so nothing half-started is left, unless ``keep_on_failure``.

        Raises:
            StackError: naming the services that do not serve and why, with their last log lines.
        """
        dc = docker_env.client()
        self.settings = docker_env.settle_subnets(dc, self.settings, ui)
        self.prepare(ui, dc=dc, rebuild=rebuild)
        s = self.settings
        docker_env.check_subnets(dc, s.project, {"LAB_INTERNET_SUBNET": s.internet_subnet,
                                                 "LAB_VPC_SUBNET": s.vpc_subnet})
        docker_env.check_ports(dc, s.bind, s.host_ports, self.published_ports())
        try:
            for attempt in range(SUBNET_ATTEMPTS):
                try:
                    with ui.task(f"Starting {s.project} (waiting for every service to serve)") as task:
                        self.compose.stream("up", "--detach", "--no-build", "--remove-orphans",
                                            on_line=task.line, timeout=s.wait_timeout + 120)
                        readiness.wait(self, dc, s.wait_timeout, on_line=task.line)
                    break
                except CommandFailed as exc:
                    # Another lab on this engine took the same free subnet between our check and
                    # our `up` (two CI jobs, pytest -n 2): pick again, if the subnets are ours to pick.
                    if not _pool_overlap(exc) or attempt == SUBNET_ATTEMPTS - 1 or \
                            not (s.internet_auto and s.vpc_auto):
                        raise
                    self.down()
                    self.settings = s = docker_env.repick_subnets(dc, s)
                    ui.warn(f"a subnet was taken meanwhile; retrying on {s.internet_subnet} and {s.vpc_subnet}")
                    self.prepare(ui, dc=dc)
        except (CommandFailed, StackError) as exc:  # compose failed, or something does not serve
            report = self._failure_report(exc, removed=not keep_on_failure)
            if not keep_on_failure:
                try:
                    self.down(ui)
                except CommandFailed as cleanup:  # keep the first error; name the second
                    report += (f"\nremoving the half-started stack failed too ({cleanup}): "
                               f"run `lab down` (project {self.settings.project})")
            raise StackError(report) from exc

    def reload(self, ui=None, dc=None, services=None) -> None:
        """Re-render the configs and reload the running servers in place, each checking its
        new config first and confirming the new generation (lab/reload.py's ``reload``).

        Raises:
            StackError: naming the server that refused its config, is not running, or did
                not switch to the new one.
        """
        reload_mod.reload(self, ui, dc=dc, services=services)

    def down(self, ui=None) -> None:
        """Stop and remove the project's containers, networks and volumes."""
        if not (self.compose.env_file.exists() and self.compose.compose_file.exists()):
            # Never rendered here: compose still needs a file to find the project's services.
            render.render(self.settings, _known_image_refs())
        every_profile = [arg for name in DESIGNS for arg in ("--profile", name)]
        self.compose.run(*every_profile, "down", "--volumes", "--remove-orphans", "--timeout", "2")
        if ui:
            ui.ok(f"{self.settings.project} is down")

    # -- inspection -----------------------------------------------------------
    def published_ports(self) -> set:
        if not self.compose.compose_file.exists():
            return set()
        try:
            rows = self.compose.ps()
        except CommandFailed:
            return set()
        return {p.get("PublishedPort") for r in rows for p in (r.get("Publishers") or [])
                if p.get("PublishedPort")}

    def services(self, dc=None) -> list[dict]:
        """Service rows for `lab status`: name, state, health, published ports.

        Health is the lab's own look (lab/readiness.py) when ``dc`` is given, "healthy" or why
        not; otherwise what Docker's slow health checks last said.
        """
        rows = {r.get("Service"): r for r in self.compose.ps()} if self.compose.compose_file.exists() else {}
        wanted = set(designs.BASE_SERVICES) | {s for d in self.settings.designs for s in DESIGN_SERVICES[d]}
        serving = readiness.check(self, dc) if dc is not None and rows else {}
        table = []
        for name in SERVICES:
            row = rows.get(name, {})
            if name not in wanted and not row:
                continue
            ports = sorted({f"{p['URL']}:{p['PublishedPort']}->{p['TargetPort']}"
                            for p in (row.get("Publishers") or []) if p.get("PublishedPort")})
            health = row.get("Health", "") or "-"
            if name in serving:
                health = serving[name] or "healthy"
            table.append({"service": name, "state": row.get("State", "absent"), "health": health, "ports": ports})
        return table

    def nlb_port(self) -> int:
        return self.compose.port("nlb", 443)

    def control_socket(self, lb: str = "nlb", which: str = "admin") -> Path:
        """A load balancer's control socket on this host: "admin" (runtime API) or "stats"."""
        return self.settings.build_dir / "run" / lb / f"{which}.sock"

    def runtime_api(self, lb: str = "nlb", timeout: float = 5.0) -> RuntimeAPI:
        """HAProxy's runtime API of load balancer ``lb`` ("nlb", "nlb-tls", "alb")."""
        return RuntimeAPI(self.control_socket(lb), timeout=timeout)

    def design_port(self, design: str) -> int:
        """Host port of a design's listener."""
        d = DESIGNS[design]
        return self.compose.port(d.service, d.container_port)

    def direct_port(self, backend: str) -> int:
        """Host port of a backend's diagnostic listener (TLS, no PROXY protocol)."""
        return self.compose.port(backend, DIRECT_LISTENER.port)

    def _failure_report(self, exc, removed: bool) -> str:
        if isinstance(exc, readiness.NotReady):
            bad, last = sorted(exc.reasons), [str(exc)]
        else:
            try:
                rows = self.services()
            except (CommandFailed, StackError):
                rows = []
            # Docker's own health is slow on purpose (every 60 s): what is not running is the news
            bad = [r["service"] for r in rows if r["state"] != "running"]
            out = getattr(exc, "stdout", "").strip()
            last = out.splitlines()[-1:] or [str(exc)]
        logs = self.compose.logs(*bad, tail=15) if bad else ""
        detail = f"; last log lines:\n{logs.strip()}" if logs.strip() else ""
        aftermath = ("everything it had started was removed (`lab up --keep-on-failure` keeps it "
                     "for `lab logs`)" if removed else "left as it is: see `lab logs`, then `lab down`")
        return (f"{self.settings.project} failed to start ({last[0]}); not serving: "
                f"{', '.join(bad) or 'unknown'}; {aftermath}{detail}")
