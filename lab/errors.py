"""Stack failures the user can act on.

A bad setting raises SettingsError (a ValueError) where it is found. The other classes
are for the environment and the running stack; every message names what failed and the
fix, in the manner of testcontainers' wait-strategy timeouts.
"""


class SettingsError(ValueError):
    """A value the user chose (LAB_* variable, option) is wrong: the CLI exits 2."""


class LabError(RuntimeError):
    """Base class: the CLI prints the message on one line and exits 1."""


class DockerNotReachable(LabError):
    """The Docker engine does not answer."""


class ComposeMissing(LabError):
    """`docker compose` (v2) is not installed."""


class PortInUse(LabError):
    """A port the lab publishes is taken by another program."""


class CertsMissing(LabError):
    """The PKI has not been generated (or is incomplete)."""


class PkiDamaged(CertsMissing):
    """A PKI file exists but cannot be used (junk, wrong key, a directory, unreadable)."""


class ImageError(LabError):
    """A lab image could not be found, pulled, bootstrapped or built."""


class StackError(LabError):
    """`docker compose` failed, or a service did not become healthy."""


class NotReached(StackError):
    """A condition the lab waited for did not come true in time."""


class CommandFailed(LabError):
    """A subprocess exited non-zero; its output is kept for the report."""

    def __init__(self, argv, returncode, stdout="", stderr="", hint=""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout or ""
        self.stderr = stderr or ""
        msg = f"{' '.join(self.argv[:4])} ... exited {returncode}"
        tail = (self.stderr or self.stdout).strip().splitlines()[-1:] or [""]
        if tail[0]:
            msg += f": {tail[0]}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)
