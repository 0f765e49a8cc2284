"""HAProxy's runtime API over the UNIX socket a load balancer keeps in the host's build folder."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from .errors import StackError
from .wait import wait_for


class RuntimeAPI:
    """HAProxy's runtime API on the UNIX socket a load balancer keeps in the host's build
    folder (build/<project>/run/<lb>/admin.sock): the operator's, and nobody else's."""

    def __init__(self, socket_path: Path, timeout: float = 5.0):
        self.path = Path(socket_path)
        self.timeout = timeout

    def command(self, line: str) -> str:
        """Send one command; return HAProxy's whole answer.

        Raises:
            StackError: when the socket is not there or nobody answers on it.
        """
        try:
            with _unix_connect(self.path, self.timeout) as sock:
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except FileNotFoundError:
            raise StackError(f"no runtime API at {self.path}: is this load balancer running? "
                             "(`lab status`, `lab up`)") from None
        except ConnectionRefusedError:
            raise StackError(f"the runtime API at {self.path} does not answer: the load balancer "
                             "is stopped or restarting (`lab status`, `lab logs`)") from None
        except PermissionError:
            raise StackError(f"{self.path} belongs to the user who started the lab: run `lab` as "
                             "that user (or with sudo)") from None
        except OSError as exc:  # a timeout, a reset: a worker starting or stopping
            raise StackError(f"the runtime API at {self.path} failed ({type(exc).__name__}): "
                             "see `lab status`, `lab logs`") from None
        return b"".join(chunks).decode()

    def stick_table(self, table: str = "web") -> dict:
        """client IP -> server name, from `show table`."""
        entries = {}
        for line in self.command(f"show table {table}").splitlines():
            key = re.search(r"\bkey=(\S+)", line)
            server = re.search(r"\bserver_key=(\S+)", line) or re.search(r"\bserver_id=(\S+)", line)
            if key and server:
                entries[key.group(1)] = server.group(1)
        return entries

    def clear_table(self, table: str = "web") -> None:
        self.command(f"clear table {table}")

    def forget(self, addresses, table: str = "web") -> None:
        """Drop the pins of these source addresses only (the next request is balanced afresh)."""
        for address in addresses:
            self.command(f"clear table {table} key {address}")

    def server_states(self, backend: str = "web") -> dict:
        """server name -> "UP"/"DOWN"/"MAINT"..., from `show stat`."""
        return {name: status for name, (status, _) in self.server_checks(backend).items()}

    def server_checks(self, backend: str = "web") -> dict:
        """server name -> (status, last health check), e.g. ("UP", "L7OK"); a server no
        check has reached yet says ("UP", "INI"): HAProxy starts servers UP."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",") if lines else []
        checks = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
                # "* L7OK": a check is running right now; the last result is what follows
                checks[row["svname"]] = (row.get("status", ""), row.get("check_status", "").removeprefix("* "))
        return checks

    def wait_up(self, names=None, timeout: float = 15, backend: str = "web") -> None:
        """Wait until ``names`` (default: every server of ``backend``) report UP.

        Raises:
            NotReached: naming the servers and the states last seen.
        """
        def up():
            states = self.server_states(backend)
            wanted = states if names is None else names
            return bool(states) and all(states.get(n) == "UP" for n in wanted) and states
        label = "every server" if names is None else ", ".join(names) or "no server"
        wait_for(up, timeout, what=f"{label} of {backend} UP")


def _unix_connect(path: Path, timeout: float) -> socket.socket:
    """A connected AF_UNIX socket; paths beyond the kernel's 107-byte limit are reached
    through /proc/self/fd (deep build folders are common)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        if len(str(path).encode()) < 100:
            sock.connect(str(path))
            return sock
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            sock.connect(f"/proc/self/fd/{fd}/{path.name}")
        finally:
            os.close(fd)
        return sock
    except BaseException:
        sock.close()
        raise
