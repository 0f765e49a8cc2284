"""`lab fault`: break a backend (or reload a load balancer) and see what clients see; the
deregistration delay's commands are wired here too (lab/cli_deregister.py)."""

from __future__ import annotations

import json

import click

from . import docker_env, fault as fault_mod
from .cli_context import pass_ctx
from .stack import Stack


@click.group()
def fault():
    """Break a backend (or reload the load balancer) and see what clients see."""


def _faults(obj):
    from .fault import Faults

    dc = docker_env.client()
    docker_env.ensure_compose()
    return Faults(Stack(obj.settings), dc)


_KIND = click.argument("kind", type=click.Choice(list(fault_mod.KINDS)))
_TARGET = click.argument("target", type=click.Choice(list(fault_mod.TARGETS)), default="web1")


@fault.command("inject")
@_KIND
@_TARGET
@pass_ctx
def fault_inject(obj, kind, target):
    """Apply a fault: stop|kill|pause|disconnect|drain|maint a backend, or reload HAProxy."""
    _faults(obj).inject(kind, target)
    obj.ui.ok(f"{kind} {target if kind != 'reload' else 'nlb'}: undo with `lab fault restore {kind} {target}`")


@fault.command("restore")
@_KIND
@_TARGET
@pass_ctx
def fault_restore(obj, kind, target):
    """Undo a fault (start, unpause, reconnect, ready)."""
    _faults(obj).restore(kind, target)
    obj.ui.ok(f"restored {target} after {kind}")


@fault.command("measure")
@_KIND
@_TARGET
@click.option("--clients", default=6, show_default=True, type=click.IntRange(1),
              help="Client source addresses sending load (spread over the backends).")
@click.option("--rate", default=10, show_default=True, type=click.IntRange(1),
              help="Requests per second per client.")
@click.option("--outage", default=6.0, show_default=True, type=click.FloatRange(0.5),
              help="Seconds between fault and undo.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def fault_measure(obj, kind, target, clients, rate, outage, as_json):
    """Inject a fault under steady load, undo it, and report what the clients saw."""
    from .fault import measure

    faults = _faults(obj)
    pool = list(faults.stack.settings.client_pool.users)
    clients = min(clients, len(pool))
    with obj.ui.task(f"{kind} {target} under load from {clients} clients at {rate}/s each"):
        report = measure(faults, kind, target, sources=pool, clients=clients, rate=rate, fault_at=3.0,
                         restore_at=3.0 + outage, duration=outage + 8.0)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    fault_mod.print_report(report)


from .cli_deregister import fault_deregister, fault_status  # noqa: E402 (after the group)

fault.add_command(fault_deregister)
fault.add_command(fault_status)
