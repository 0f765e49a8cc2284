"""One image with every role's Debian packages, that every role image starts FROM.

Each role declares its packages in one place, the file `packages` in its build folder (one
name a line, `#` comments). They are installed together, once: one `apt-get update`, one
download, one dpkg run, instead of one per role side by side on two cores. The role images
then only copy their own files and set their command. The layer is tagged with a hash of the
base image and the package list, so a new package (or a new role) rebuilds it.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

PACKAGES_FILE = "packages"
# The role Dockerfiles' `ARG` naming the layer they start FROM.
BUILD_ARG = "PACKAGES_IMAGE"


def role_packages(folder: Path) -> list[str]:
    """The packages a role's folder declares (none without a `packages` file)."""
    try:
        lines = (Path(folder) / PACKAGES_FILE).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [word for line in lines for word in line.split("#", 1)[0].split()]


def union(folders) -> list[str]:
    """Every role's packages, sorted, each once."""
    return sorted({p for folder in folders for p in role_packages(folder)})


def dockerfile(base: str, packages: list[str]) -> str:
    """The layer's Dockerfile: the base, then every package in one apt run."""
    names = " \\\n        ".join(packages)
    return (f"# Every role's packages ({PACKAGES_FILE} in each role's folder), for the roles to start FROM.\n"
            f"FROM {base}\n"
            "RUN apt-get update \\\n"
            " && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\\n"
            f"        {names} \\\n"
            " && rm -rf /var/lib/apt/lists/*\n")


def tag_hash(base_id: str, text: str) -> str:
    """The layer's tag: the base image's id and the Dockerfile (so the package list)."""
    return hashlib.sha256(f"{base_id}\0{text}".encode()).hexdigest()[:12]


def context(text: str) -> io.BytesIO:
    """A build context holding only the Dockerfile (the layer copies nothing in)."""
    buf = io.BytesIO()
    data = text.encode()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf
