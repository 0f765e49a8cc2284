"""`lab fault deregister <backend>` and `lab fault status`: an NLB target group's
deregistration delay (lab/deregister.py). lab/cli.py adds them to the `fault` group."""

from __future__ import annotations

import json

import click

from . import deregister
from .cli_context import pass_ctx
from .fault import TARGETS, _targets
from .stack import Stack


@click.command("deregister")
@click.argument("target", type=click.Choice(list(TARGETS)))
@pass_ctx
def fault_deregister(obj, target):
    """Deregister a target as an NLB does: no new connections at once, `draining` for
    LAB_DEREGISTRATION_DELAY, then `unused` (connections closed only with
    LAB_DEREGISTRATION_CONNECTION_TERMINATION=on). The command returns at once."""
    s = obj.settings
    records = deregister.start(Stack(s), _targets(target), s.deregistration_delay, s.deregistration_termination)
    ends = ("established connections are closed at the end" if s.deregistration_termination else
            "established connections go on (LAB_DEREGISTRATION_CONNECTION_TERMINATION=off)")
    for r in records:
        if r.phase == "unused":
            obj.ui.ok(f"{r.backend} deregistered: unused at once (delay 0 s); "
                      + (f"{r.closed} connection(s) closed" if r.terminate else ends))
        else:
            obj.ui.ok(f"{r.backend} deregistered: no new connections; draining for {s.deregistration_delay:g} s, "
                      f"then unused; {ends}")
    obj.ui.info(f"  `lab fault status` shows the time left; `lab fault restore deregister {target}` "
                "re-registers at once")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def fault_status(obj, as_json):
    """Deregistered targets: draining (with the time left) or unused."""
    rows = deregister.report(Stack(obj.settings))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif rows:
        deregister.print_rows(rows)
    else:
        obj.ui.ok("no target is deregistered (`lab fault deregister web1` deregisters one)")
