"""`lab capture`: what crosses the internet side and the vpc side of a design, in pcapng files.

One dumpcap per load balancer and side runs on this machine, on the compose network's Linux
bridge, filtered to the load balancer's address on that network. The host's own tools sit on
both bridges already (docs/architecture.md), and every frame between two containers of a
network crosses its bridge, so nothing is added to the containers (their images have no
capture tools) and nothing changes in what they do. A capture container in a load
balancer's network namespace would see the same frames but needs an image with dumpcap.

The capture ends on a real condition: after the traffic, a marker datagram is sent to each
captured address and the capture stops once its file holds the marker (everything sent
before it is in the file by then). Captures are bounded in time and size (dumpcap's
autostop conditions) and live in build/<project>/captures/, which `lab down` removes.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import designs, keylog
from .errors import LabError, NotReached, SettingsError
from .wait import wait_for

SIDES = ("internet", "vpc")
MAX_SECONDS = 300      # a capture's ceiling in time (--seconds sets it for an ad-hoc capture)
MAX_MB = 20            # and in size, per file
START_TIMEOUT = 10.0   # seconds for dumpcap to open its interface
MARKER_PORT = 9        # the discard port: the marker datagram is answered by nothing but ICMP
MARKER = b"lab capture: end "
# What Wireshark needs besides the key log: the PROXY v2 header arrives on port 443, where the
# TLS dissector would claim it; its heuristic dissector must run first.
WIRESHARK_PREFS = ("tcp.try_heuristic_first:TRUE",)
# What a trainer points at: the PROXY v2 header, Certificate messages, the decrypted requests
SHOW = "proxy.src.ipv4 || tls.handshake.type == 11 || http || http2 || tls.alert_message"


def captures_dir(settings) -> Path:
    """Where this project's captures go (removed by `lab down`)."""
    return settings.build_dir / "captures"


def kept_dir(settings) -> Path:
    """Where `lab capture --keep` puts them (`lab down` leaves it alone)."""
    return Path(settings.home) / "captures"


def remove_captures(settings) -> Path | None:
    """Remove the project's captures (`lab down`); the folder removed, or None."""
    folder = captures_dir(settings)
    if not folder.exists():
        return None
    shutil.rmtree(folder)
    return folder


def give_back(folder: Path, env=None) -> None:
    """Under sudo, hand the capture folder (and the captures folder above it) to the user who
    ran sudo, so that their own `lab down` can remove it and Wireshark open it."""
    env = os.environ if env is None else env
    if os.geteuid() != 0 or not env.get("SUDO_UID"):
        return
    uid, gid = int(env["SUDO_UID"]), int(env.get("SUDO_GID", env["SUDO_UID"]))
    for path in (folder.parent, folder, *folder.iterdir()):
        os.chown(path, uid, gid)


def check_tools() -> str:
    """dumpcap's path, when this machine can capture.

    Raises:
        LabError: dumpcap is not installed, or this is not root.
    """
    dumpcap = shutil.which("dumpcap")
    if not dumpcap:
        raise LabError("dumpcap is not installed: `apt-get install tshark` (it brings dumpcap and tshark)")
    if os.geteuid() != 0:
        raise LabError("capturing on the lab's bridges needs root: run `sudo -E .venv/bin/lab capture ...`")
    return dumpcap


@dataclass(frozen=True)
class Target:
    """One side of one load balancer: the bridge it crosses and the address to keep."""

    lb: str
    side: str
    interface: str
    address: str

    @property
    def name(self) -> str:
        return f"{self.lb}-{self.side}"


def load_balancers(stack, running: set, chosen=(), demo: str | None = None) -> tuple:
    """The load balancers to capture: the chosen designs', the demo's, or every running one.

    Raises:
        SettingsError: an unknown demo.
        LabError: naming a design (or the demo's) whose load balancer is not running, and the fix.
    """
    if demo is not None:
        from .demos import DEMOS
        if demo not in DEMOS:
            raise SettingsError(f"--demo {demo!r}: choose one of {', '.join(DEMOS)}")
        wanted = DEMOS[demo][2]
    elif chosen:
        wanted = tuple(dict.fromkeys(designs.DESIGNS[d].service for d in chosen))
    else:
        wanted = tuple(lb for lb in designs.LOAD_BALANCERS if lb in running)
    for lb in wanted:
        if lb not in running:
            name = next(d.name for d in designs.LOAD_BALANCERS[lb].designs)
            raise LabError(f"{stack.settings.project}: the {lb} load balancer is not running: "
                           f"`lab up --design {name}` (or `--all-designs`) first")
    if not wanted:
        raise LabError(f"{stack.settings.project} is not running: `lab up` first")
    return wanted


def bridge(dc, project: str, side: str) -> str:
    """The Linux bridge of compose network ``side`` (Docker names it br-<id[:12]>)."""
    net = dc.networks.get(f"{project}_{side}")
    return net.attrs.get("Options", {}).get("com.docker.network.bridge.name") or f"br-{net.id[:12]}"


def targets(stack, dc, lbs) -> list[Target]:
    """Both sides of each load balancer in ``lbs``."""
    interfaces = {side: bridge(dc, stack.settings.project, side) for side in SIDES}
    out = []
    for lb in lbs:
        for side, address in zip(SIDES, stack.settings.lb_ips(lb)):
            out.append(Target(lb, side, interfaces[side], address))
    return out


@dataclass
class Capture:
    """dumpcap on every target, into ``folder``; a context manager (start, then stop)."""

    folder: Path
    targets: list
    seconds: float = MAX_SECONDS
    max_mb: int = MAX_MB
    dumpcap: str = "dumpcap"
    procs: dict = field(default_factory=dict)
    logs: dict = field(default_factory=dict)
    ended: list = field(default_factory=list)  # stopped by a limit before stop() (not after wait())
    waited: list = field(default_factory=list)  # stopped at the end of wait(): their time was the point

    @property
    def keylog(self) -> keylog.KeyLog:
        return keylog.KeyLog(self.folder / "keylog.txt")

    def file(self, target: Target) -> Path:
        return self.folder / f"{target.name}.pcapng"

    def argv(self, target: Target) -> list[str]:
        """dumpcap's command for one target: pcapng, its address only, bounded in time and size."""
        return [self.dumpcap, "-q", "-i", target.interface, "-f", f"host {target.address}",
                "-w", str(self.file(target)), "-a", f"duration:{self.seconds:g}",
                "-a", f"filesize:{self.max_mb * 1000}",
                "--capture-comment", f"lab capture: {target.name} ({target.address} on {target.interface})"]

    def start(self) -> None:
        """Start every dumpcap and return once each has opened its interface.

        Raises:
            LabError: when dumpcap exits or does not start (its message, and the fix).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        self.keylog.host.touch(mode=0o600)
        for target in self.targets:
            proc = subprocess.Popen(self.argv(target), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True, errors="replace")
            lines: list[str] = []
            ready = threading.Event()
            threading.Thread(target=_read, args=(proc, lines, ready), daemon=True).start()
            self.procs[target], self.logs[target] = proc, lines
            if not ready.wait(START_TIMEOUT) or proc.poll() is not None:
                self.stop(mark=False)
                said = next((l for l in lines if "ermission" in l or "rror" in l or "don't" in l), "")
                raise LabError(f"dumpcap did not start on {target.interface}: {said or 'no answer'} "
                               "(run as root; `lab status` for the networks)")

    def stop(self, mark: bool = True) -> None:
        """Mark the end of every capture, wait until the marker is written, stop dumpcap."""
        self.ended += [t for t, p in self.procs.items() if p.poll() is not None and t not in self.waited]
        try:
            if mark:
                self._mark_and_wait()
        finally:
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)  # dumpcap closes the file cleanly
            for proc in self.procs.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def _mark_and_wait(self) -> None:
        nonce = MARKER + uuid.uuid4().hex.encode()
        live = [t for t in self.targets if self.procs[t].poll() is None]  # not ended by a limit
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for target in live:
                sock.sendto(nonce, (target.address, MARKER_PORT))
        try:
            wait_for(lambda: all(nonce in self.file(t).read_bytes() for t in live), 10,
                     interval=0.1, what="the end-of-capture marker in every capture file")
        except NotReached as exc:
            raise LabError(f"{exc}: dumpcap may have dropped packets (see `{' '.join(self.argv(live[0]))}`)") from None

    def wait(self) -> None:
        """Until every dumpcap has stopped by itself (its time limit)."""
        for target, proc in self.procs.items():
            proc.wait()
            self.waited.append(target)

    def __enter__(self) -> "Capture":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop(mark=exc[0] is None)

    def limited(self) -> list[str]:
        """The files that stopped at a limit before the end: their size, or (``ended``, from
        stop()) their time."""
        full = self.max_mb * 1_000_000  # dumpcap's filesize counts kB of 1000 bytes
        return [t.name for t in self.targets
                if t in self.ended or (self.file(t).exists() and self.file(t).stat().st_size >= full)]


def _read(proc: subprocess.Popen, lines: list, ready: threading.Event) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line.rstrip("\n"))
        if line.startswith("Capturing on") or line.startswith("File:"):
            ready.set()
    ready.set()  # it ended: start() looks at why


def copy_container_keylog(box, log: keylog.KeyLog) -> int:
    """Append the client container's key log to the host's, then remove it there; the lines copied."""
    rc, out, _ = box.exec_split(["cat", str(log.container)])
    box.exec_split(["rm", "-rf", str(log.container.parent)])
    if rc != 0:
        return 0
    with open(log.host, "a") as f:
        f.write(out)
    return sum(1 for line in out.splitlines() if line and not line.startswith("#"))


def prepare_container(box, log: keylog.KeyLog) -> None:
    """Put the OpenSSL config curl uses during a capture into the client container."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = keylog.OPENSSL_CNF.encode()
        info = tarfile.TarInfo(log.openssl_cnf.name)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    box.exec_split(["mkdir", "-p", str(log.openssl_cnf.parent)])
    box.container.put_archive(str(log.openssl_cnf.parent), buf.getvalue())


def commands(files: list[Path], log: Path) -> list[str]:
    """The wireshark command for each of ``files`` and a tshark one for the first vpc side,
    all with the key log."""
    prefs = ["-o", f"tls.keylog_file:{log}", *(a for p in WIRESHARK_PREFS for a in ("-o", p))]
    lines = [shlex.join(["wireshark", *prefs, str(path)]) for path in files]
    vpc = [p for p in files if p.stem.endswith("-vpc")] or files
    if vpc:
        lines.append(shlex.join(["tshark", "-r", str(vpc[0]), *prefs, "-Y", SHOW]))
    return lines
