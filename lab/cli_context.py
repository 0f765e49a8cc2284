"""The `lab` command's context: its UI and its settings (read once, on first use), and
-q/-v accepted after a subcommand as well as before it. lab/cli.py wires the commands."""

from __future__ import annotations

from pathlib import Path

import click

from .settings import Settings
from .ui import UI


class Context:
    def __init__(self, quiet: bool, verbose: bool, workdir: str | None = None):
        self.ui = UI(quiet=quiet, verbose=verbose)
        self.workdir = workdir
        self._settings = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            overrides = {"home": Path(self.workdir).resolve()} if self.workdir else {}
            self._settings = Settings.from_env(**overrides)
        return self._settings


_pass_context = click.make_pass_decorator(Context)


def _verbosity(ctx, param, value):
    """-q/-v given after the subcommand (`lab up -q`) count as much as before it."""
    if value and ctx.find_object(Context) is not None:
        obj = ctx.find_object(Context)
        obj.ui = UI(quiet=obj.ui.quiet or param.name == "quiet",
                    verbose=obj.ui.verbose or param.name == "verbose")
    return value


def pass_ctx(func):
    """Pass the Context, and accept -q/-v on the subcommand too."""
    func = _pass_context(func)
    func = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_verbosity,
                        help="Stream the output of docker, debootstrap, compose.")(func)
    return click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_verbosity,
                        help="Print errors only.")(func)
