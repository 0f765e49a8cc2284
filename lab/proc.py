"""Subprocesses: argument lists only, output kept for the error report."""

from __future__ import annotations

import collections
import subprocess

from .errors import CommandFailed


def run(argv, *, env=None, check: bool = True, input: str | None = None,
        timeout: float | None = None, hint: str = "") -> subprocess.CompletedProcess:
    """Run ``argv`` and capture its output as text.

    Raises:
        CommandFailed: when it exits non-zero and ``check`` is set (stdout/stderr kept).
        FileNotFoundError: when the program is not installed.
    """
    proc = subprocess.run(list(argv), env=env, input=input, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stdout, proc.stderr, hint=hint)
    return proc


def stream(argv, on_line, *, env=None, keep: int = 40, hint: str = "") -> list[str]:
    """Run ``argv``, handing each output line (stdout and stderr merged) to ``on_line``.

    Returns:
        The last ``keep`` lines.

    Raises:
        CommandFailed: when it exits non-zero, with those last lines as its output.
    """
    tail: collections.deque[str] = collections.deque(maxlen=keep)
    with subprocess.Popen(list(argv), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            on_line(line)
        rc = proc.wait()
    if rc != 0:
        raise CommandFailed(argv, rc, "\n".join(tail), "", hint=hint)
    return list(tail)
