"""What `lab dashboard` shows, read from a running lab without changing it: one look costs
one Docker API call (the project's containers, not inspected one by one), one `show stat`
per load balancer and one `show table` per source-sticky one on their runtime API sockets,
and the bytes the connection logs grew by since the last look.

- topology: each running load balancer, its designs (listeners, host ports) and its targets
  with the load balancer's own health check of each;
- services: every service's container state and health (the load balancers: their runtime
  API answers; the targets: the NLB's checks, as lab/readiness.py asks them);
- stick tables: client IP -> target, from `show table web` (lab/runtime_api.py);
- requests per target each second, from the servers' `stot` counters (cumulative sessions:
  a TCP connection at the NLB, a request at the ALB and CloudFront), summed over every load
  balancer and backend, over the last ``HISTORY`` looks;
- refused clients: the connection logs' lines whose tls_verify_status is not Success
  (lab/connlog.py), newest first.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from pathlib import Path

import docker.errors

from .. import connlog
from ..designs import BACKENDS, DESIGNS, LOAD_BALANCERS, SERVICES, SORRY
from ..errors import LabError
from ..runtime_api import RuntimeAPI

HISTORY = 60            # looks kept for the requests chart (one a second: the last minute)
REFUSED_SHOWN = 8       # refused clients listed
TAIL_START = 64 * 1024  # bytes of a connection log read on the first look (its newest lines)
API_TIMEOUT = 1.0       # a load balancer that does not answer within this is shown as such
TARGETS = (*BACKENDS, SORRY.name)
# Looks further apart than this mean nobody watched in between (the hub pauses without a
# page): the counters' growth then spans the pause, so the history starts afresh.
GAP = 5.0


def parse_stat(text: str) -> list[dict]:
    """HAProxy's `show stat` CSV -> one dict per row (pxname, svname, status, stot...)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#"):
        return []
    header = lines[0].lstrip("# ").split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:] if line.strip()]


def target_totals(rows: list[dict]) -> dict:
    """target -> its cumulative sessions over every backend of one load balancer."""
    totals = dict.fromkeys(TARGETS, 0)
    for row in rows:
        if row.get("svname") in totals and row.get("stot", "").isdigit():
            totals[row["svname"]] += int(row["stot"])
    return totals


def target_checks(rows: list[dict], backend: str) -> dict:
    """target -> {"status": "UP"..., "check": "L7OK"...} in ``backend`` (the one whose checks
    vouch for the targets; "" for a load balancer that sends none: its first backend with
    targets, unchecked)."""
    if not backend:
        backend = next((r["pxname"] for r in rows if r.get("svname") in TARGETS), "")
    return {r["svname"]: {"status": r.get("status", ""),
                          "check": r.get("check_status", "").removeprefix("* ") if r.get("check_status") else "none"}
            for r in rows if r.get("pxname") == backend and r.get("svname") in TARGETS}


class LogTail:
    """The lines a file grew by since the last read (a file that shrank or was replaced is
    read again from its start); the first read takes only its last ``start`` bytes."""

    def __init__(self, path: Path, start: int = TAIL_START):
        self.path = Path(path)
        self._start = start
        self._offset = None   # None: never read
        self._inode = None
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            stat = os.stat(self.path)
        except OSError:
            return []
        if self._offset is None:
            self._offset = max(0, stat.st_size - self._start)
            self._skip_first = self._offset > 0  # the first line read is probably cut
        elif stat.st_ino != self._inode or stat.st_size < self._offset:
            self._offset, self._partial, self._skip_first = 0, b"", False
        self._inode = stat.st_ino
        if stat.st_size == self._offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = self._partial + f.read(stat.st_size - self._offset)
        self._offset = stat.st_size
        *lines, self._partial = data.split(b"\n")
        if self._skip_first and lines:
            lines, self._skip_first = lines[1:], False
        return [line.decode(errors="replace") for line in lines]


def _design_at(service: str, listener_port: str) -> str:
    return next((d.name for d in DESIGNS.values() if d.service == service
                 and str(d.container_port) == listener_port), service)


def refusal(service: str, record: dict) -> dict:
    """A connection-log record of a refused handshake, as the dashboard lists it."""
    return {"time": record["timestamp"], "client_ip": record["client_ip"],
            "design": _design_at(service, record["listener_port"]),
            "reason": record["tls_verify_status"].removeprefix("Failed:"),
            "subject": record["leaf_client_cert_subject"].strip('"')}


class Collector:
    """Looks at one lab instance (a lab.stack.Stack) and keeps what the dashboard needs
    between looks (the counters' last values, the requests history, the refused clients)."""

    def __init__(self, stack, dc, history: int = HISTORY):
        self.stack = stack
        self.dc = dc
        self.history = deque(maxlen=history)
        self.refused = deque(maxlen=REFUSED_SHOWN)
        self._tails = {svc: LogTail(connlog.path(stack.settings.build_dir, svc)) for svc in connlog.services()}
        self._last_totals: dict | None = None
        self._last_time = 0.0

    def containers(self) -> dict:
        """service -> {"state", "docker_health", "ports"} of the project's containers."""
        found = self.dc.containers.list(all=True, sparse=True, filters={
            "label": f"com.docker.compose.project={self.stack.settings.project}"})
        rows = {}
        for c in found:
            attrs = c.attrs
            service = (attrs.get("Labels") or {}).get("com.docker.compose.service")
            status = attrs.get("Status", "")
            # Docker's own (slow) health checks, where it has run one: "Up 2 minutes (healthy)"
            health = next((h for h in ("unhealthy", "healthy", "starting")
                           if re.search(rf"\((health: )?{h}\)", status)), "running")
            ports = {p["PrivatePort"]: p["PublicPort"] for p in attrs.get("Ports") or [] if p.get("PublicPort")}
            rows[service] = {"state": attrs.get("State", ""), "docker_health": health, "ports": ports}
        return rows

    def look(self) -> dict:
        """One look at the lab: everything the page draws, as JSON-ready data."""
        now = time.time()
        containers = self.containers()
        balancers, tables, totals = [], {}, {}
        lb_health, target_health = {}, {}
        for lb in LOAD_BALANCERS.values():
            if containers.get(lb.service, {}).get("state") != "running":
                continue
            ports = containers[lb.service]["ports"]
            entry = {"service": lb.service, "summary": lb.summary, "error": "", "targets": {},
                     "designs": [{"name": d.name, "mode": d.mode, "verifies": d.verifies,
                                  "port": ports.get(d.container_port)} for d in lb.designs]}
            api = RuntimeAPI(self.stack.control_socket(lb.service), timeout=API_TIMEOUT)
            try:
                rows = parse_stat(api.command("show stat"))
                if lb.source_sticky:
                    tables[lb.service] = api.stick_table()
            except (LabError, OSError) as exc:
                entry["error"] = str(exc)
                lb_health[lb.service] = "runtime API does not answer"
                balancers.append(entry)
                continue
            lb_health[lb.service] = "serving"
            entry["targets"] = target_checks(rows, lb.check_backend)
            if lb.always_on:  # the NLB's checks speak for the targets (lab/readiness.py)
                target_health = entry["targets"]
            totals[lb.service] = target_totals(rows)
            balancers.append(entry)
        running = {name for name, c in containers.items() if c["state"] == "running"}
        return {"time": now, "project": self.stack.settings.project,
                "designs_up": [d.name for d in DESIGNS.values() if d.service in running],
                "balancers": balancers,
                "services": self._services(containers, lb_health, target_health),
                "stick_tables": tables,
                "requests": self._requests(now, totals),
                "refused": self._refused()}

    def _services(self, containers: dict, lb_health: dict, target_health: dict) -> list[dict]:
        rows = []
        for name in SERVICES:
            if name not in containers:
                continue
            c = containers[name]
            health = c["docker_health"]
            if c["state"] != "running":
                health = c["state"]
            elif name in lb_health:
                health = lb_health[name]
            elif name in target_health:
                t = target_health[name]
                health = f"{t['status']} {t['check']}"
            ok = c["state"] == "running" and (health in ("serving", "healthy", "running", "starting")
                                               or health.startswith("UP "))
            rows.append({"service": name, "state": c["state"], "health": health, "ok": ok})
        return rows

    def _requests(self, now: float, totals: dict) -> dict:
        """This look's requests per target and the history. ``totals``: load balancer ->
        target -> its counter. A look's requests are the counters' growth since the last look,
        over the load balancers both looks read (one that did not answer once is not a spike
        of its whole count the next time); a reloaded load balancer's counters start again
        from zero, and its first look after counts none."""
        last, self._last_totals = self._last_totals, totals
        if last is not None and now - self._last_time > GAP:
            self.history.clear()
            last = None
        self._last_time = now
        if last is not None:
            both = [lb for lb in totals if lb in last]
            self.history.append({"time": now, **{t: sum(max(0, totals[lb][t] - last[lb][t]) for lb in both)
                                                 for t in TARGETS}})
        window = list(self.history)
        return {"targets": list(TARGETS), "history": window,
                "sums": {t: sum(s[t] for s in window) for t in TARGETS}}

    def _refused(self) -> list[dict]:
        new = []
        for service, tail in self._tails.items():
            for line in tail.new_lines():
                record = connlog.parse(line)
                if record and record["tls_verify_status"] != "Success":
                    new.append(refusal(service, record))
        self.refused.extend(sorted(new, key=lambda r: r["time"]))
        return list(reversed(self.refused))


def look_or_error(collector: Collector) -> dict:
    """``collector.look()``, or {"error": why} when the lab cannot be read (Docker gone)."""
    try:
        return collector.look()
    except (LabError, OSError, docker.errors.DockerException) as exc:
        return {"time": time.time(), "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
