"""`lab explain CLIENT`: the command's wiring (the probing and wording are in lab/explain.py)."""

from __future__ import annotations

import json

import click

from . import docker_env
from .cli_context import pass_ctx
from .stack import Stack


@click.command()
@click.argument("client")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, one record per design.")
@pass_ctx
def explain(obj, client, as_json):
    """What each running design does with CLIENT's certificate (certs/clients/CLIENT), and why."""
    from .explain import check_client, explain as run_explain, print_report

    check_client(client)
    dc = docker_env.client()
    docker_env.ensure_compose()
    results = run_explain(Stack(obj.settings), dc, client)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    print_report(client, results, echo=click.echo)
