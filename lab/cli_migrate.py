"""`lab migrate`: the command's wiring (the drill is lab/migrate.py)."""

from __future__ import annotations

import json
import signal

import click

from . import docker_env
from .cli_context import pass_ctx
from .stack import Stack


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report (every probe included).")
@pass_ctx
def migrate(obj, as_json):
    """The seed's cutover drill: www.lab.test moves from the ALB without client-certificate auth
    to the NLB through the DNS server's API, with clients asking all along, then back (the
    rollback). Reports per client when it moved, its errors, who was locked out for having no
    certificate and who got access back; exits 1 when that is not what happened.
    Needs the ALB's before-migration listener: `lab up --design alb-before`."""
    from .migrate import print_report, require, run

    dc = docker_env.client()
    docker_env.ensure_compose()
    stack = Stack(obj.settings)
    require(stack, dc)  # before the progress line: a missing listener is one line of error
    for sig in (signal.SIGTERM, signal.SIGHUP):  # as Ctrl-C: the drill puts the alias back first
        signal.signal(sig, _interrupt)
    with obj.ui.task("Cutover drill: ALB -> NLB -> ALB") as task:
        report = run(stack, dc, on_line=task.line)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_report(report, echo=click.echo)
    if report["unexpected"]:
        raise SystemExit(1)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)
