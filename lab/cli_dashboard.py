"""`lab dashboard`: the command's wiring (the looks are lab/dashboard/collect.py's, the
sharing lab/dashboard/hub.py's, the web server lab/dashboard/server.py's)."""

from __future__ import annotations

import asyncio
import functools

import click

from . import docker_env
from .cli_context import pass_ctx
from .stack import Stack


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port on 127.0.0.1 (default 8480, env LAB_DASHBOARD_PORT; 0: any free one).")
@pass_ctx
def dashboard(obj, port):
    """A live page of the running lab on 127.0.0.1, for projecting: topology and health, stick
    tables, requests per target, refused clients. Read-only; Ctrl-C stops it."""
    from .dashboard.collect import Collector, look_or_error
    from .dashboard.hub import Hub
    from .dashboard.server import serve

    dc = docker_env.client()
    stack = Stack(obj.settings)
    if not stack.compose.env_file.exists():
        obj.ui.warn(f"{obj.settings.project} has never been started here: the page stays empty until `lab up`")
    hub = Hub(functools.partial(look_or_error, Collector(stack, dc)))

    def ready(url):
        click.echo(url)  # stdout: the one line a script needs
        obj.ui.info("  read-only, this machine only; it looks at the lab once a second while a page "
                    "is open, never otherwise. Ctrl-C stops it.")

    port = obj.settings.dashboard_port if port is None else port
    asyncio.run(serve(hub, port, ready))
    obj.ui.ok("dashboard stopped")
