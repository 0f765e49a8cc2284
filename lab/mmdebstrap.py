"""The base image with mmdebstrap, where the host has it (lab/bootstrap.py falls back to
debootstrap): apt downloads the packages side by side and dpkg installs them in one run, so
Debian 13's minimal system takes about 24 s here instead of debootstrap's 39 s.

    mmdebstrap --variant=minbase --keyring=KEYRING --format=tar trixie ROOTFS.tar "deb MIRROR ..."
    docker import ROOTFS.tar debian:trixie-slim

The sources given become the image's own (archive, updates, security), and mmdebstrap
leaves no package lists or caches behind, like the official slim image.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import CommandFailed, ImageError
from .proc import stream

TIMEOUT = 900  # seconds
IMPORT_TIMEOUT = 300  # seconds
LABEL = "org.mtls-lab.bootstrapped=mmdebstrap"


def available(env) -> bool:
    """mmdebstrap is installed and LAB_BOOTSTRAP_TOOL does not ask for debootstrap."""
    return (env.get("LAB_BOOTSTRAP_TOOL") or "auto") != "debootstrap" and shutil.which("mmdebstrap") is not None


def argv(suite: str, target, sources: list[str], keyring) -> list[str]:
    """The mmdebstrap command: a minimal ``suite`` as a tarball, signatures checked with ``keyring``.

    Raises:
        ImageError: for a suite that looks like an option, or a source that is no `deb` line.
    """
    if not suite or suite.startswith("-"):
        raise ImageError(f"mmdebstrap suite {suite!r} is not valid: use a Debian codename, e.g. trixie")
    for line in sources:
        if not line.startswith("deb http"):
            raise ImageError(f"mmdebstrap source {line!r} is not valid: set LAB_DEBIAN_MIRROR to a URL, "
                             "e.g. http://deb.debian.org/debian")
    return ["mmdebstrap", "--variant=minbase", f"--keyring={keyring}", "--format=tar", suite, str(target), *sources]


def bootstrap(tag: str, task, *, suite: str, sources: list[str], keyring, parent: str) -> None:
    """Build ``tag`` with mmdebstrap and import it into Docker.

    Raises:
        ImageError: when a step fails or times out (its last line shown), naming the fix.
    """
    workdir = Path(tempfile.mkdtemp(prefix="lab-rootfs-", dir=parent))
    target = workdir / "rootfs.tar"
    try:
        try:
            stream(argv(suite, target, sources, keyring), _on_line(task), timeout=TIMEOUT,
                   hint=f"sources {sources[0]}; set LAB_DEBIAN_MIRROR to another")
        except CommandFailed as exc:
            out = f"{exc.stdout}\n{exc.stderr}"
            if "NO_PUBKEY" in out or "not signed" in out:
                raise ImageError(f"mmdebstrap refused {suite}'s archive: it is signed by keys that {keyring} "
                                 "does not hold; `sudo apt-get install debian-archive-keyring` or set "
                                 "LAB_DEBIAN_KEYRING, then `lab images` again") from exc
            last = (exc.stderr or exc.stdout).strip().splitlines()[-1:]
            raise ImageError(f"mmdebstrap failed: {last[0] if last else exc} ({sources[0]}; set "
                             "LAB_DEBIAN_MIRROR to one you can reach, or LAB_BOOTSTRAP_TOOL=debootstrap)") from exc
        task.line(f"docker import -> {tag}")
        _import(target, tag)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _on_line(task):
    def on_line(line: str) -> None:
        task.line(line)
        if line.startswith("I: "):
            task.advance()
    return on_line


def _import(tarball: Path, tag: str) -> None:
    try:
        imp = subprocess.run(["docker", "import", "--change", 'CMD ["bash"]', "--change", f"LABEL {LABEL}",
                              str(tarball), tag],
                             capture_output=True, text=True, check=False, timeout=IMPORT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ImageError(f"docker import of {tarball} timed out after {IMPORT_TIMEOUT} s: check that the "
                         "Docker engine answers (`docker info`), then `lab images` again") from None
    if imp.returncode != 0:
        raise ImageError(f"docker import of {tarball} failed: {(imp.stderr or imp.stdout).strip()}")
