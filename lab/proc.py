"""Subprocesses: argument lists only, output kept for the error report."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading

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


def stream(argv, on_line, *, env=None, keep: int = 40, hint: str = "",
           timeout: float | None = None) -> list[str]:
    """Run ``argv``, handing each output line (stdout and stderr merged) to ``on_line``.

    Args:
        timeout: seconds after which the command (and every process it started) is killed.

    Returns:
        The last ``keep`` lines.

    Raises:
        CommandFailed: when it exits non-zero or times out, with those last lines as its output.
    """
    tail: collections.deque[str] = collections.deque(maxlen=keep)
    timed_out = threading.Event()
    # With a timeout the command gets its own session, so that killing it also kills what it
    # started (debootstrap's wget, chroot...), which would otherwise hold the pipe open.
    with subprocess.Popen(list(argv), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace", start_new_session=timeout is not None) as proc:
        assert proc.stdout is not None
        timer = None
        if timeout is not None:
            def expire() -> None:
                timed_out.set()
                _kill_group(proc)
            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        try:
            for line in proc.stdout:
                tail.append(line.rstrip("\n"))
                on_line(line)
            rc = proc.wait()
        except BaseException:
            if timeout is not None:  # not in the terminal's process group: Ctrl-C would miss it
                _kill_group(proc)
            raise
        finally:
            if timer is not None:
                timer.cancel()
    if rc != 0:
        stderr = f"timed out after {timeout:g} s" if timed_out.is_set() else ""
        raise CommandFailed(argv, rc, "\n".join(tail), stderr, hint=hint)
    return list(tail)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:  # a member we may not signal: at least stop the command itself
        proc.kill()
