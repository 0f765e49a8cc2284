"""Where the lab's own files are: the compose file, Dockerfiles, templates, sorry page.

In a source checkout they are the repository's top-level folders (compose/, haproxy/,
nginx/, client/, verifier/); an installed wheel carries the same folders as lab/assets/.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT = PACKAGE_DIR.parent
_INSTALLED = PACKAGE_DIR / "assets"


def in_checkout() -> bool:
    """True when running from a source checkout (not an installed wheel)."""
    return (CHECKOUT / "compose" / "compose.yaml.j2").exists() and (CHECKOUT / "pyproject.toml").exists()


ROOT = CHECKOUT if in_checkout() else _INSTALLED


def path(*parts: str) -> Path:
    """A file or folder among the lab's resources, e.g. path("compose", "compose.yaml.j2")."""
    return ROOT.joinpath(*parts)


def default_home(cwd: Path | None = None) -> Path:
    """Where certs/ and build/ go by default: the checkout itself, else ./.lab."""
    return CHECKOUT if in_checkout() else Path(cwd or Path.cwd()) / ".lab"
