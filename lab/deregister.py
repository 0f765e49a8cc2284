"""Deregistering a target with a delay, as an NLB target group does (`lab fault deregister`).

AWS (research/nlb.md §4): a deregistered target gets no new connections at once and is
`draining` for `deregistration_delay.timeout_seconds` (default 300), then `unused`; with
`connection_termination.enabled` its connections are "closed shortly after the end of the
deregistration timeout", without it they may go on.

In HAProxy 3.0, `set server ... state drain` "still allows it to be checked and to accept
new persistent connections" (management guide, `set server`): a client the stick table pins
to the target would keep opening new connections to it. `maint` "disables any traffic to
the server" yet leaves established connections alone, which is what a deregistered target
gets, so the target is in maintenance from the first moment; draining and unused differ only
by the time left and by `shutdown sessions server` at the end when termination is on.

The timer is a detached helper (`python -m lab.deregister <record>`, its own session): it
outlives the `lab` command, as AWS's delay outlives the API call, needs no change to
HAProxy's config, and `lab fault restore deregister` cancels it. Its record (JSON in
build/<project>/deregister/) tells `lab status` the time left; it names the HAProxy worker
it was made for, because a reload or restart forgets runtime states.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import LabError, StackError
from .runtime_api import RuntimeAPI

LB = "nlb"          # target groups with this attribute: the NLB's (its backend `web`)
POOL = "web"
STARTED_SLACK_S = 3  # a worker's start time, read from its uptime in whole seconds


@dataclass
class Record:
    """One deregistration: what the helper and `lab status` read."""

    backend: str
    socket: str
    token: str
    started: float       # epoch seconds (the helper and status are other processes)
    deadline: float
    terminate: bool
    worker: dict         # the HAProxy worker it was made for: {"pid": ..., "started": ...}
    phase: str = "draining"  # then "unused"
    helper: int | None = None
    closed: int | None = None  # sessions the target still had when they were shut

    def seconds_left(self, now: float | None = None) -> float:
        return max(0.0, round(self.deadline - (time.time() if now is None else now), 1))


def folder(stack) -> Path:
    return stack.settings.build_dir / "deregister"


def _path(stack, backend: str) -> Path:
    return folder(stack) / f"{backend}.json"


def load(path: Path) -> Record | None:
    try:
        return Record(**json.loads(Path(path).read_text()))
    except FileNotFoundError:
        return None


def _save(path: Path, record: Record) -> None:
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps(asdict(record), indent=2) + "\n")
    staged.replace(path)


@contextlib.contextmanager
def _locked(where: Path):
    """One deregistration change at a time: the CLI's and the helpers'."""
    where.mkdir(parents=True, exist_ok=True)
    with open(where / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _ok(api: RuntimeAPI, command: str) -> None:
    answer = api.command(command).strip()
    if answer:
        raise StackError(f"HAProxy refused `{command}`: {answer}")


def worker(api: RuntimeAPI) -> dict:
    """The HAProxy worker behind the socket: its pid and (about) when it started."""
    info = api.command("show info")
    pid = re.search(r"^Pid: (\d+)", info, re.M)
    uptime = re.search(r"^Uptime_sec: (\d+)", info, re.M)
    if not (pid and uptime):
        raise StackError(f"HAProxy's `show info` at {api.path} names no Pid/Uptime_sec: is it the nlb?")
    return {"pid": int(pid.group(1)), "started": round(time.time() - int(uptime.group(1)))}


def _same_worker(a: dict, b: dict) -> bool:
    return a["pid"] == b["pid"] and abs(a["started"] - b["started"]) <= STARTED_SLACK_S


def start(stack, backends, delay: float, terminate: bool) -> list[Record]:
    """Deregister ``backends`` at once; a helper makes them unused after ``delay`` seconds.

    Raises:
        LabError: when one is already deregistered (name the restore command).
    """
    api = stack.runtime_api(LB)
    where = folder(stack)
    with _locked(where):
        now_worker = worker(api)
        for backend in backends:
            old = load(_path(stack, backend))
            if old and _same_worker(old.worker, now_worker):
                raise LabError(f"{backend} is already deregistered ({old.phase}, {old.seconds_left():.0f} s "
                               f"left): `lab fault restore deregister {backend}` re-registers it")
        records = []
        for backend in backends:
            _ok(api, f"set server {POOL}/{backend} state maint")
            now = time.time()
            record = Record(backend, str(api.path), uuid.uuid4().hex, now, now + delay, terminate, now_worker)
            path = _path(stack, backend)
            if delay <= 0:
                _finish(api, record)
            _save(path, record)
            if delay > 0:
                record.helper = _spawn(path)
                _save(path, record)
            records.append(record)
    return records


def _spawn(path: Path) -> int:
    """Start the timer in a session of its own: it outlives this command and its terminal."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    with open(path.with_suffix(".log"), "a") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lab.deregister", str(path)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                close_fds=True)
    return proc.pid


def _finish(api: RuntimeAPI, record: Record) -> None:
    """The end of the delay: unused; with termination, its connections closed."""
    _ok(api, f"set server {POOL}/{record.backend} state maint")  # still: nobody lifted it meanwhile
    if record.terminate:
        record.closed = sessions(api).get(record.backend, 0)
        _ok(api, f"shutdown sessions server {POOL}/{record.backend}")
    record.phase = "unused"
    record.helper = None


def sessions(api: RuntimeAPI) -> dict:
    """server -> current sessions (established connections), from `show stat`."""
    lines = api.command("show stat").splitlines()
    header = lines[0].lstrip("# ").split(",") if lines else []
    rows = (dict(zip(header, line.split(","))) for line in lines[1:])
    return {r["svname"]: int(r.get("scur") or 0) for r in rows
            if r.get("pxname") == POOL and r.get("svname") not in ("FRONTEND", "BACKEND")}


def restore(stack, backends) -> None:
    """Re-register ``backends`` at once, cancelling a pending timer."""
    api = stack.runtime_api(LB)
    where = folder(stack)
    with _locked(where):
        for backend in backends:
            path = _path(stack, backend)
            record = load(path)
            path.unlink(missing_ok=True)  # a helper that wakes up now finds nothing to do
            if record and record.helper and _is_helper(record.helper, path):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(record.helper, signal.SIGTERM)
            _ok(api, f"set server {POOL}/{backend} state ready")


def _is_helper(pid: int, path: Path) -> bool:
    """Only our own helper is signalled, never a process that reused its pid."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"lab.deregister" in argv and str(path).encode() in argv


def report(stack, api: RuntimeAPI | None = None) -> list[dict]:
    """One row per deregistered backend: state (draining/unused, or forgotten by a reload),
    seconds left, termination, HAProxy's state and established connections."""
    paths = sorted(folder(stack).glob("*.json"))
    if not paths:
        return []
    api = api or stack.runtime_api(LB, timeout=2)
    try:
        now_worker, states, live = worker(api), api.server_states(POOL), sessions(api)
    except (OSError, StackError):
        now_worker, states, live = None, {}, {}
    rows = []
    for path in paths:
        record = load(path)
        if record is None:
            continue
        state = record.phase
        if now_worker is None:
            state = f"{record.phase} (the nlb does not answer)"
        elif not _same_worker(record.worker, now_worker):
            state = "forgotten (nlb reloaded)"
        elif record.phase == "draining" and not (record.helper and _is_helper(record.helper, path)):
            state = f"draining, its timer is gone (see {path.with_suffix('.log').name})"
        rows.append({"backend": record.backend, "state": state, "seconds_left": record.seconds_left(),
                     "delay_s": round(record.deadline - record.started, 3), "deadline": record.deadline,
                     "until": time.strftime("%H:%M:%S", time.localtime(record.deadline)),
                     "termination": record.terminate, "haproxy": states.get(record.backend, "?"),
                     "connections": live.get(record.backend), "closed": record.closed})
    return rows


def print_rows(rows: list[dict], console=None) -> None:
    """Draw ``report``'s rows as a table."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="deregistered targets (nlb)")
    for col in ("target", "state", "time left", "until", "termination", "HAProxy", "connections"):
        table.add_column(col)
    for r in rows:
        left = f"{r['seconds_left']:.0f} s" if r["state"] == "draining" else "-"
        conns = "-" if r["connections"] is None else str(r["connections"])
        if r["closed"] is not None:
            conns += f" ({r['closed']} closed at the end)"
        table.add_row(r["backend"], r["state"], left, r["until"], "on" if r["termination"] else "off",
                      r["haproxy"], conns)
    console.print(table)


def _wait_out(path: Path) -> int:
    """The helper: sleep until the deadline, then end the delay unless restored meanwhile."""
    record = load(path)
    if record is None:
        return 0
    while (left := record.deadline - time.time()) > 0:
        time.sleep(min(left, 5.0))
    with _locked(path.parent):
        current = load(path)
        if current is None or current.token != record.token:
            return 0  # re-registered (and maybe deregistered again: that one has its own helper)
        api = RuntimeAPI(Path(record.socket))
        try:
            if not _same_worker(current.worker, worker(api)):
                print(f"{record.backend}: HAProxy was reloaded or restarted during the delay; nothing to do")
                return 0
            _finish(api, current)
        except StackError as exc:  # `lab down` during the delay, say
            print(f"{record.backend}: could not end the delay: {exc}")
            return 1
        _save(path, current)
    print(f"{record.backend}: unused after {record.deadline - record.started:g} s"
          + (f", {current.closed} connection(s) closed" if record.terminate else ""))
    return 0


if __name__ == "__main__":
    sys.exit(_wait_out(Path(sys.argv[1])))
