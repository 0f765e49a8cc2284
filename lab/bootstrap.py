"""Make debian:trixie-slim from OS packages, for machines that cannot pull it: with
mmdebstrap where the host has it (lab/mmdebstrap.py, faster), else:

    debootstrap --variant=minbase --keyring=KEYRING trixie ROOTFS MIRROR
    tar -C ROOTFS -c . | docker import - debian:trixie-slim

The mirror is the one this machine's apt already uses (an air-gapped site's own
mirror), LAB_DEBIAN_MIRROR overrides it, deb.debian.org is the last resort.
The mirror is plain HTTP, so debootstrap checks the archive's signatures against
Debian's keyring (package debian-archive-keyring; LAB_DEBIAN_KEYRING overrides the
path); without the keyring the lab refuses rather than build an unverified image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import mmdebstrap
from .errors import CommandFailed, ImageError
from .proc import stream

SUITE = "trixie"
# The image every role image starts FROM. Another name (LAB_BASE_IMAGE, with LAB_IMAGE_PREFIX
# in lab/images.py) lets a second checkout build its images from nothing beside the usual ones.
BASE_IMAGE = os.environ.get("LAB_BASE_IMAGE") or "debian:trixie-slim"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
APT_SOURCES = Path("/etc/apt")
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")
# What a Debian 12 host needs to bootstrap trixie (both are bookworm point-release updates):
# debootstrap's trixie script without usr-is-merged (Debian bug #1091649), trixie's archive keys.
DEBOOTSTRAP_FOR_SUITE = "1.0.128+nmu2+deb12u2"
KEYRING_FOR_SUITE = "2023.3+deb12u2"
DEBOOTSTRAP_TIMEOUT = 900  # seconds
IMPORT_TIMEOUT = 300  # seconds


def _entries(apt_dir: Path):
    """(uris, suites) for every `deb` source in sources.list(.d), one-line and deb822."""
    files = [apt_dir / "sources.list"] + sorted((apt_dir / "sources.list.d").glob("*.list"))
    for path in files:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb":
                yield [line[1]], [line[2]]
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        try:
            stanzas = path.read_text().split("\n\n")
        except OSError:
            continue
        for stanza in stanzas:
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith((" ", "#")):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"])[0] != "no":
                yield fields.get("uris", []), fields.get("suites", [])


def find_mirrors(apt_dir: Path = APT_SOURCES, env=None) -> tuple[str, str]:
    """The Debian archive and security mirrors this machine's apt uses.

    Returns:
        (mirror, security_mirror), falling back to deb.debian.org.
    """
    env = os.environ if env is None else env
    mirror = env.get("LAB_DEBIAN_MIRROR")
    security = env.get("LAB_DEBIAN_SECURITY_MIRROR")
    for uris, suites in _entries(apt_dir):
        for uri in uris:
            uri = uri.rstrip("/")
            if not uri.startswith(("http://", "https://")):
                continue
            if uri.endswith("/debian-security") or any(s.endswith("-security") for s in suites):
                security = security or uri
            elif uri.endswith("/debian"):
                mirror = mirror or uri
    return mirror or DEFAULT_MIRROR, security or DEFAULT_SECURITY


def _sources_list(mirror: str, security: str) -> str:
    return (f"deb {mirror} {SUITE} main\n"
            f"deb {mirror} {SUITE}-updates main\n"
            f"deb {security} {SUITE}-security main\n")


def find_keyring(env=None) -> Path:
    """The keyring debootstrap verifies the Debian archive with (LAB_DEBIAN_KEYRING overrides).

    Raises:
        ImageError: when that file does not exist: the signature check is never skipped.
    """
    env = os.environ if env is None else env
    keyring = Path(env.get("LAB_DEBIAN_KEYRING") or DEBIAN_KEYRING)
    if not keyring.is_file():
        raise ImageError(f"cannot verify the Debian archive: keyring {keyring} not found; "
                         "`sudo apt-get install debian-archive-keyring` (or set LAB_DEBIAN_KEYRING "
                         "to Debian's keyring file), then `lab images` again")
    return keyring


def debootstrap_argv(suite: str, rootfs, mirror: str, keyring) -> list[str]:
    """The debootstrap command: a minimal ``suite`` into ``rootfs``, signatures checked with ``keyring``.

    Raises:
        ImageError: when the suite or mirror looks like an option (e.g. a LAB_DEBIAN_MIRROR
            of "--no-check-gpg"), which would change what debootstrap does.
    """
    if not suite or suite.startswith("-"):
        raise ImageError(f"debootstrap suite {suite!r} is not valid: use a Debian codename, e.g. {SUITE}")
    if not mirror or mirror.startswith("-"):
        raise ImageError(f"debootstrap mirror {mirror!r} is not valid: set LAB_DEBIAN_MIRROR to a URL, "
                         f"e.g. {DEFAULT_MIRROR}")
    return ["debootstrap", "--variant=minbase", f"--keyring={keyring}", suite, str(rootfs), mirror]


def bootstrap_base_image(tag: str, task, *, workdir: str | None = None, env=None) -> None:
    """Build ``tag`` from Debian packages with debootstrap and import it into Docker.

    Args:
        tag: image reference to create, e.g. "debian:trixie-slim".
        task: a ui.Task for progress lines.
        workdir: where to put the temporary root filesystem (default /var/tmp).

    Raises:
        ImageError: when not root, debootstrap or Debian's keyring is missing, or a step fails
            or times out (its output tail shown).
    """
    if mmdebstrap.available(os.environ if env is None else env):
        _with_mmdebstrap(tag, task, workdir, env)
        return
    if shutil.which("debootstrap") is None:
        raise ImageError(f"cannot pull {tag} and debootstrap is not installed to build it: "
                         "`sudo apt-get install debootstrap`, then `lab images` again")
    keyring = find_keyring(env)
    if not (DEBOOTSTRAP_SCRIPTS / SUITE).exists():
        raise ImageError(f"cannot pull {tag} and this debootstrap does not know Debian {SUITE} "
                         f"(no {DEBOOTSTRAP_SCRIPTS / SUITE}): `sudo apt-get install debootstrap` "
                         f"({DEBOOTSTRAP_FOR_SUITE} or newer), then `lab images` again")
    if os.geteuid() != 0:
        raise ImageError(f"cannot pull {tag}; bootstrapping it needs root (debootstrap creates "
                         "device nodes): run `sudo -E .venv/bin/lab images` once, then carry on as yourself")
    mirror, security = find_mirrors(env=env)
    task.line(f"debootstrap {SUITE} from {mirror}, verified with {keyring}")
    parent = workdir or os.environ.get("LAB_BOOTSTRAP_DIR") or "/var/tmp"
    rootfs = Path(tempfile.mkdtemp(prefix="lab-rootfs-", dir=parent))
    try:
        def on_line(line: str) -> None:
            task.line(line)
            if line.startswith(("I: Retrieving", "I: Unpacking", "I: Configuring")) and \
                    "Packages" not in line and "Release" not in line:
                task.advance()

        try:
            stream(debootstrap_argv(SUITE, rootfs, mirror, keyring), on_line,
                   hint=f"mirror {mirror}; set LAB_DEBIAN_MIRROR to another", timeout=DEBOOTSTRAP_TIMEOUT)
        except CommandFailed as exc:
            if "signed by unknown key" in f"{exc.stdout}\n{exc.stderr}":  # debootstrap's UNKNOWNRELSIG: an old keyring
                raise ImageError(f"debootstrap refused {SUITE}'s Release from {mirror}: it is signed by keys "
                                 f"that {keyring} does not hold; `sudo apt-get install debian-archive-keyring` "
                                 f"({KEYRING_FOR_SUITE} or newer holds Debian 13's keys) or set "
                                 "LAB_DEBIAN_KEYRING, then `lab images` again") from exc
            last = (exc.stderr or exc.stdout).strip().splitlines()[-1:]
            raise ImageError(f"debootstrap failed: {last[0] if last else exc}"
                             f" (mirror {mirror}; set LAB_DEBIAN_MIRROR to one you can reach)") from exc
        # Make it look like the official slim image: updates and security sources, no caches.
        (rootfs / "etc/apt/sources.list").write_text(_sources_list(mirror, security))
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / junk).glob("*"):
                if item.is_file():
                    item.unlink()
        task.line(f"docker import -> {tag}")
        _import(rootfs, tag)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def _with_mmdebstrap(tag: str, task, workdir: str | None, env) -> None:
    keyring = find_keyring(env)
    if os.geteuid() != 0:
        raise ImageError(f"cannot pull {tag}; bootstrapping it needs root (mmdebstrap creates "
                         "device nodes): run `sudo -E .venv/bin/lab images` once, then carry on as yourself")
    mirror, security = find_mirrors(env=env)
    task.line(f"mmdebstrap {SUITE} from {mirror}, verified with {keyring}")
    mmdebstrap.bootstrap(tag, task, suite=SUITE, sources=_sources_list(mirror, security).splitlines(),
                         keyring=keyring, parent=workdir or os.environ.get("LAB_BOOTSTRAP_DIR") or "/var/tmp")


def _import(rootfs: Path, tag: str) -> None:
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                           stdout=subprocess.PIPE)
    try:
        imp = subprocess.run(
            ["docker", "import",
             "--change", 'CMD ["bash"]',
             "--change", "LABEL org.mtls-lab.bootstrapped=debootstrap",
             "-", tag],
            stdin=tar.stdout, capture_output=True, text=True, check=False, timeout=IMPORT_TIMEOUT)
    except subprocess.TimeoutExpired:
        tar.kill()
        raise ImageError(f"docker import of {rootfs} timed out after {IMPORT_TIMEOUT} s: "
                         "check that the Docker engine answers (`docker info`), then `lab images` again") from None
    finally:
        if tar.stdout:
            tar.stdout.close()
        tar_rc = tar.wait()
    if tar_rc != 0 or imp.returncode != 0:
        raise ImageError(f"docker import of {rootfs} failed: {(imp.stderr or imp.stdout).strip()}")
