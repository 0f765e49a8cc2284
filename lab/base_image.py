"""The base image, before the virtualenv exists: `make lab-up` runs this with the system's
Python 3 while pip installs the lab beside it, so a cold start spends the bootstrap's minute
and the virtualenv's half-minute side by side. Standard library and the docker CLI only.

    python3 -m lab.base_image      # present, else pulled, else bootstrapped; then exits

`lab images` does the same through the Docker SDK (lab/images.py) and finds it present.
"""

from __future__ import annotations

import subprocess
import sys

from .bootstrap import BASE_IMAGE, bootstrap_base_image
from .errors import LabError

PULL_TIMEOUT = 300  # seconds


class _Progress:
    """A ui.Task for plain output: debootstrap's phases and a package count, not every line."""

    def __init__(self, out=sys.stdout):
        self.out, self.packages = out, 0

    def line(self, text: str) -> None:
        text = text.rstrip()
        if text and not text.startswith(("I: Retrieving", "I: Validating", "I: Unpacking", "I: Configuring",
                                "I: Extracting")):
            print(f"base image: {text}", file=self.out, flush=True)

    def advance(self) -> None:
        self.packages += 1
        if self.packages % 25 == 0:
            print(f"base image: {self.packages} package steps", file=self.out, flush=True)


def _docker(*argv: str, timeout: float = 30) -> bool:
    try:
        return subprocess.run(["docker", *argv], capture_output=True, timeout=timeout, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure(tag: str = BASE_IMAGE, out=sys.stdout) -> str:
    """Make ``tag`` exist: "present", "pulled" or "bootstrapped".

    Raises:
        ImageError: when it can be neither pulled nor bootstrapped (the message names the fix).
    """
    if _docker("image", "inspect", tag):
        return "present"
    if _docker("pull", "--quiet", tag, timeout=PULL_TIMEOUT):
        return "pulled"
    print(f"base image: cannot pull {tag}; bootstrapping it from Debian packages", file=out, flush=True)
    bootstrap_base_image(tag, _Progress(out))
    return "bootstrapped"


def main() -> int:
    try:
        print(f"base image: {BASE_IMAGE} {ensure()}", flush=True)
    except LabError as exc:
        # `lab up` tries again and says the same: a Makefile step need not stop here
        print(f"base image: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
