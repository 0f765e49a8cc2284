"""`lab explain CLIENT`: what each running design does with one client certificate, and why.

Every statement comes from a live probe made the one way the lab makes requests
(lab/client.py: curl in the client container, from `lab compare`'s probe address) and,
where the design keeps one, from the connection-log line that probe produced.
"""

from __future__ import annotations

import time

from . import connlog
from .certs import CLIENT_NAMES
from .compare import clients_for
from .designs import DESIGNS
from .errors import LabError
from .stack import Stack

LOG_WAIT = 3.0  # seconds for the probe's connection-log line to reach the file


def check_client(name: str) -> None:
    """Raises:
        LabError: for a name that is not one of certs/clients/<name>."""
    if name not in CLIENT_NAMES:
        raise LabError(f"unknown client {name!r}: choose one of {', '.join(CLIENT_NAMES)}")


def _log_line(stack: Stack, design: str, source: str, before: int) -> dict | None:
    """The connection-log record the probe wrote (the newest from ``source`` on the design's
    listener), waiting up to LOG_WAIT seconds; None for a design without connection logs."""
    d = DESIGNS[design]
    if not d.connection_log:
        return None
    deadline = time.monotonic() + LOG_WAIT
    while True:
        records = [r for r in connlog.read(stack.settings.build_dir, design)[before:]
                   if r["client_ip"] == source]
        if records or time.monotonic() > deadline:
            return records[-1] if records else {}
        time.sleep(0.2)


def _outcome(design: str, answer, record: dict | None) -> dict:
    d = DESIGNS[design]
    at_lb = d.verifies.startswith(("load balancer", "edge"))
    body = answer.json
    if answer.status == 0:
        where = "load balancer" if d.terminates_tls else "backend"
        sees = f"handshake refused: alert {answer.alert}" if answer.alert else f"no HTTP answer: {answer.error}"
        # no alert from a load balancer that ends TLS: it closed after the handshake (the NLB
        # TLS listener's identity filters, and its revocation check behind them)
        outcome = (f"handshake refused at the {where}" if answer.alert or not d.terminates_tls
                   else f"closed by the {where} after the handshake")
        target = "never sees the request" if d.terminates_tls else "refuses it in the TLS handshake"
    else:
        verify = answer.client_verify
        sees = f"HTTP {answer.status}" + (f", client_verify={verify}" if verify else "")
        if body.get("backend"):
            target = (f"{body['backend']} ({body.get('listener', '?')} listener): "
                      f"client_verify={verify or '-'}, subject={body.get('client_subject') or '-'}")
        else:
            target = "never sees the request"
        if answer.status == 200:
            outcome = "accepted" + ("" if at_lb else f", verified by the {d.verifies}")
        elif body.get("backend"):
            outcome = f"refused by the target (HTTP {answer.status})"
        else:
            outcome = f"refused by the load balancer (HTTP {answer.status})"
    status = (record or {}).get("tls_verify_status")
    aws = outcome + (f"; connection log tls_verify_status={status}" if status else "")
    aws += f"; the target {target}" if target == "never sees the request" else ""
    return {"design": design, "load_balancer": d.service, "check": d.verifies, "client_sees": sees,
            "target_sees": target, "outcome": outcome, "tls_verify_status": status,
            "connection_log": (record or {}).get("line"), "aws": f"{design}: {aws}"}


def explain(stack: Stack, dc, client: str) -> list[dict]:
    """One probe per running design with ``client``'s certificate; a record for each.

    Raises:
        LabError: for an unknown client name, or when no design is running.
    """
    check_client(client)
    listeners = clients_for(stack, dc)
    if not listeners:
        raise LabError(f"{stack.settings.project} is not running: `lab up` (or `lab up --all-designs`) first")
    source = stack.settings.client_pool.probe
    results = []
    for design, listener in listeners.items():
        before = len(connlog.read(stack.settings.build_dir, design)) if DESIGNS[design].connection_log else 0
        answer = listener.get(client, source)
        results.append(_outcome(design, answer, _log_line(stack, design, source, before)))
    return results


def print_report(client: str, results: list[dict], echo=print) -> None:
    echo(f"client certificate: {client} (certs/clients/{client}.crt)")
    for r in results:
        echo(f"\n{r['aws']}")
        echo(f"  checked at:   {r['check']}")
        echo(f"  client sees:  {r['client_sees']}")
        echo(f"  target sees:  {r['target_sees']}")
        if r["connection_log"]:
            echo(f"  conn. log:    {r['connection_log']}")
    missing = [d for d in DESIGNS if d not in {r['design'] for r in results}]
    if missing:
        echo(f"\nnot running: {', '.join(missing)} (`lab up --all-designs` to explain them too)")

