"""Fault injection: break a backend (or the load balancer) and measure what clients saw.

Faults, each with its undo:

    stop        docker stop (SIGQUIT, graceful)         -> docker start
    kill        docker kill (SIGKILL)                   -> docker start
    pause       docker pause (frozen, TCP still accepts) -> docker unpause
    disconnect  docker network disconnect from the vpc   -> reconnect with the same address
    drain       HAProxy: no new clients, pinned ones stay -> ready
    maint       HAProxy: no traffic at all               -> ready
    reload      HAProxy master-worker reload (SIGUSR2)   -> (nothing to undo)
    deregister  NLB deregistration delay (lab/deregister.py) -> registered again at once

`measure` runs steady load from several client addresses while injecting and undoing
the fault, and reports failed requests, detection/recovery times read from HAProxy's
runtime API, and where the pinned clients went.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from . import containers, deregister, load
from .client import Container, Host, request
from .errors import StackError
from .settings import BACKENDS
from .stack import Stack

KINDS = ("stop", "kill", "pause", "disconnect", "drain", "maint", "reload", "deregister")
TARGETS = BACKENDS + ("all",)


def _targets(target: str) -> tuple[str, ...]:
    if target == "all":
        return BACKENDS
    if target not in BACKENDS:
        raise ValueError(f"unknown backend {target!r}: choose one of {', '.join(TARGETS)}")
    return (target,)


class Faults:
    """Inject and undo faults on one running stack."""

    def __init__(self, stack: Stack, dc):
        self.stack = stack
        self.dc = dc
        self.api = stack.runtime_api()

    def _container(self, service: str):
        return containers.compose_container(self.dc, self.stack.settings.project, service)

    def _vpc(self):
        return self.dc.networks.get(f"{self.stack.settings.project}_vpc")

    def inject(self, kind: str, target: str) -> None:
        """Apply fault ``kind`` to ``target`` ("web1", "web2", "all"; ignored for reload).

        Raises:
            ValueError: for an unknown fault or backend.
        """
        if kind == "reload":
            self._container("nlb").kill(signal="SIGUSR2")
            return
        names = _targets(target)
        compose = self.stack.compose
        if kind == "stop":
            compose.run("stop", "--timeout", "2", *names)
        elif kind == "kill":
            compose.run("kill", *names)
        elif kind == "pause":
            compose.run("pause", *names)
        elif kind == "disconnect":
            for name in names:
                self._vpc().disconnect(self._container(name))
        elif kind in ("drain", "maint"):
            for name in names:
                self._api_ok(f"set server web/{name} state {kind}")
        elif kind == "deregister":
            s = self.stack.settings
            deregister.start(self.stack, names, s.deregistration_delay, s.deregistration_termination)
        else:
            raise ValueError(f"unknown fault {kind!r}: choose one of {', '.join(KINDS)}")

    def restore(self, kind: str, target: str) -> None:
        """Undo ``inject(kind, target)``."""
        if kind == "reload":
            return
        names = _targets(target)
        compose = self.stack.compose
        if kind in ("stop", "kill"):
            compose.run("start", *names)
        elif kind == "pause":
            compose.run("unpause", *names)
        elif kind == "disconnect":
            for name in names:
                container = self.dc.containers.get(self._all_containers()[name])
                self._vpc().connect(container, ipv4_address=self.stack.settings.backend_ip(name))
        elif kind in ("drain", "maint"):
            for name in names:
                self._api_ok(f"set server web/{name} state ready")
        elif kind == "deregister":
            deregister.restore(self.stack, names)
        else:
            raise ValueError(f"unknown fault {kind!r}: choose one of {', '.join(KINDS)}")

    def _all_containers(self) -> dict:
        """service -> container id, running or not (a disconnected container is still running)."""
        found = self.dc.containers.list(all=True, filters={
            "label": f"com.docker.compose.project={self.stack.settings.project}"})
        return {c.labels.get("com.docker.compose.service"): c.id for c in found}

    def _api_ok(self, command: str) -> None:
        answer = self.api.command(command).strip()
        if answer:
            raise StackError(f"HAProxy refused `{command}`: {answer}")


@dataclass
class Timeline:
    """Changes of a polled value over time: HAProxy's server states, what a client gets."""

    poll: object  # () -> dict of name -> value
    interval: float = 0.1
    events: list = field(default_factory=list)  # (monotonic time, name, new value)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        last: dict = {}
        while not self._stop.is_set():
            try:
                values = self.poll()
            except Exception as exc:  # a poll that fails is a value too ("error: ...")
                values = {"error": type(exc).__name__}
            now = time.monotonic()
            for name, value in values.items():
                if last.get(name) != value:
                    self.events.append((now, name, value))
            last = values
            self._stop.wait(self.interval)

    def start(self) -> "Timeline":
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def first(self, name: str, prefixes: tuple, after: float) -> float | None:
        for when, key, value in self.events:
            if key == name and when >= after and str(value).startswith(prefixes):
                return when
        return None


def _seconds(later: float | None, earlier: float) -> float | None:
    return round(later - earlier, 2) if later is not None else None


def pin_clients(faults: Faults, via: Container, pool: list[str], count: int,
                client: str = "alice") -> dict[str, str]:
    """Pin ``count`` source addresses from ``pool`` with real requests, as evenly over the
    backends as the pool allows; return source -> backend.

    New clients go round-robin, but HAProxy's weighted round-robin is no strict
    alternation right after servers changed state: four new clients in a row can all
    land on one backend. Drawing from a larger pool keeps every measurement meaningful.
    """
    faults.api.clear_table()  # forget earlier runs' pins
    share = -(-count // len(BACKENDS))  # at most ceil(count / backends) per backend
    chosen: dict[str, str] = {}
    spare: dict[str, str] = {}
    for src in pool:
        if len(chosen) == count:
            break
        backend = request(via, client, source=src).served().backend
        if list(chosen.values()).count(backend) < share:
            chosen[src] = backend
        else:
            spare[src] = backend
    for src, backend in spare.items():  # a small pool: fill up, unevenly
        if len(chosen) == count:
            break
        chosen[src] = backend
    return chosen


def measure(faults: Faults, kind: str, target: str, *, sources: list[str], clients: int | None = None,
            rate: int = 10, fault_at: float = 3.0, restore_at: float = 9.0, duration: float = 14.0,
            client: str = "alice") -> dict:
    """Inject ``kind`` on ``target`` under load, undo it, and report what clients saw.

    ``clients`` addresses (default: all) are drawn from the pool ``sources`` and pinned
    first, spread over the backends (see `pin_clients`); they then send the load.

    Returns:
        A dict: settings, load summary, failures, detection and recovery seconds,
        and per-source backend paths (before, during, after).
    """
    s = faults.stack.settings
    via = Container(containers.ClientContainer(faults.dc, s.project))
    # start from a healthy baseline: a backend still rising after an earlier disturbance
    # (a scan, a reload) would take no new clients
    faults.api.wait_up(BACKENDS, timeout=30)
    before = pin_clients(faults, via, sources, clients or len(sources), client)
    sources = list(before)
    states = Timeline(faults.api.server_states).start()
    from_host, port = Host(s.certs_dir), faults.stack.nlb_port()
    host = Timeline(lambda: {"host": request(from_host, client, port=port, timeout=2).served().backend}).start()
    samples: list = []
    served: set = set()
    everyone_served = threading.Event()

    def first_answer(source: str) -> None:
        served.add(source)
        if served >= set(sources):
            everyone_served.set()

    loader = threading.Thread(target=lambda: samples.extend(
        load.run_load(via, sources, rate=rate, duration=duration, client=client, on_first=first_answer)),
        daemon=True)
    injected = restored = None
    undone = False
    try:
        loader.start()
        # The fault clock starts once every client has had an answer: on a busy machine
        # the curl processes take a moment to start, and a client whose first request
        # meets the fault would tell nothing about where it had been pinned.
        if not everyone_served.wait(timeout=15):
            raise StackError(f"the load did not start: answers from {len(served)} of {len(sources)} "
                             "clients after 15 s (`lab logs client`)")
        t0 = time.monotonic()
        time.sleep(fault_at)
        injected = time.monotonic()
        faults.inject(kind, target)
        time.sleep(max(0.0, restore_at - (time.monotonic() - t0)))
        restored = time.monotonic()
        faults.restore(kind, target)
        undone = True
        loader.join()
        names = () if kind == "reload" else _targets(target)
        faults.api.wait_up(names, timeout=30)
        time.sleep(0.3)
    finally:  # the fault never outlives the measurement (Ctrl-C, an error)
        try:
            if injected is not None and not undone:
                faults.restore(kind, target)
        finally:
            states.stop()
            host.stop()
    after = {src: request(via, client, source=src).served().backend for src in sources}

    detection = {n: _seconds(states.first(n, ("DOWN", "MAINT", "DRAIN"), injected), injected) for n in names}
    recovery = {n: _seconds(states.first(n, ("UP",), restored), restored) for n in names}
    summary = load.summarize(samples)
    table = faults.api.stick_table()
    return {
        "fault": kind,
        "target": target,
        "health_checks": {"inter": s.check_inter, "fall": s.check_fall, "rise": s.check_rise,
                          "timeout": "1s"},
        "load": {"sources": len(sources), "rate_per_source": rate, "seconds": duration,
                 "fault_at": fault_at, "restore_at": restore_at},
        **summary,
        "detected_after_s": detection,
        "back_up_after_s": recovery,
        # what a client polling from the host every 0.1 s saw
        "host_first_sorry_after_s": _seconds(host.first("host", ("sorry",), injected), injected),
        "host_back_on_a_backend_after_s": _seconds(host.first("host", ("web",), restored), restored),
        "pinned_before": before,
        "pinned_after": after,
        "stick_table": {src: table.get(src) for src in sources},
        "sorry_in_stick_table": "sorry" in table.values(),
    }


def print_report(r: dict, console=None) -> None:
    """Draw ``measure``'s report: what the clients saw, and where each was pinned."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    hc = r["health_checks"]
    table = Table(title=f"fault: {r['fault']} {r['target']}  (health checks: inter {hc['inter']}, "
                        f"fall {hc['fall']}, rise {hc['rise']}, timeout {hc['timeout']})")
    table.add_column("measure")
    table.add_column("value")
    rows = [
        ("requests", f"{r['requests']} ({r['load']['sources']} clients x {r['load']['rate_per_source']}/s "
                     f"x {r['load']['seconds']:.0f} s)"),
        ("served by a backend", str(r["served"])),
        ("answered by the sorry page", str(r["sorry_page"])),
        ("failed", f"{r['failed']} {r['failed_by_kind'] or ''}"),
        ("latency p50 / p99 / max", " / ".join(f"{v * 1000:.0f} ms" if v is not None else "-"
                                               for v in r["latency_s"].values())),
        ("HAProxy saw it after", ", ".join(f"{k}: {v} s" for k, v in r["detected_after_s"].items()) or "-"),
        ("back UP after undo", ", ".join(f"{k}: {v} s" for k, v in r["back_up_after_s"].items()) or "-"),
        ("host client: first sorry page after", f"{r['host_first_sorry_after_s']} s" if r["host_first_sorry_after_s"] is not None else "-"),
        ("sorry page ever pinned", "yes" if r["sorry_in_stick_table"] else "no"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    moves = Table(title="where each client was pinned")
    for col in ("client", "before", "path during the run", "after"):
        moves.add_column(col)
    for src, before in r["pinned_before"].items():
        moves.add_row(src, before, " -> ".join(r["path_per_source"].get(src, [])), r["pinned_after"][src])
    console.print(moves)
