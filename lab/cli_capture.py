"""`lab capture`: the command's wiring (the capturing is lab/capture.py's)."""

from __future__ import annotations

import sys
import time

import click

from . import capture, docker_env, keylog
from .cli_context import pass_ctx
from .containers import ClientContainer
from .designs import DESIGNS
from .errors import SettingsError
from .stack import Stack

AD_HOC_SECONDS = 30  # a capture without a demo, unless --seconds says otherwise


@click.command("capture")
@click.option("--design", "chosen", multiple=True, type=click.Choice(list(DESIGNS)),
              help="Capture this design's load balancer (repeatable; default: the demo's, or every running one).")
@click.option("--demo", default=None, help="Run this demo (`lab demo` lists them) and capture what it sends.")
@click.option("--seconds", type=click.FloatRange(1, capture.MAX_SECONDS), default=None,
              help=f"Capture for this long instead (default {AD_HOC_SECONDS}); your own clients log "
                   "their keys with the SSLKEYLOGFILE printed.")
@click.option("--max-mb", type=click.IntRange(1, 1000), default=capture.MAX_MB, show_default=True,
              help="Stop a file at this size.")
@click.option("--keep", is_flag=True, help="Write to $LAB_HOME/captures/, which `lab down` leaves alone.")
@pass_ctx
def capture_cmd(obj, chosen, demo, seconds, max_mb, keep):
    """Record the internet and vpc sides of a design into pcapng files, with a TLS key log."""
    if demo and seconds:
        raise SettingsError("--demo and --seconds: choose one (a demo's capture ends with the demo)")
    dumpcap = capture.check_tools()
    dc = docker_env.client()
    docker_env.ensure_compose()
    stack = Stack(obj.settings)
    running = {r["service"] for r in stack.services() if r["state"] == "running"}
    lbs = capture.load_balancers(stack, running, chosen, demo)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = (capture.kept_dir(stack.settings) / f"{stack.settings.project}-{stamp}" if keep
              else capture.captures_dir(stack.settings) / stamp)
    limit = capture.MAX_SECONDS if demo else (seconds or AD_HOC_SECONDS)
    cap = capture.Capture(folder, capture.targets(stack, dc, lbs), seconds=limit, max_mb=max_mb, dumpcap=dumpcap)
    box = ClientContainer(dc, stack.settings.project) if "client" in running else None
    if box:
        capture.prepare_container(box, cap.keylog)
    seen = True
    try:
        with keylog.recording(cap.keylog), cap:
            obj.ui.ok(f"capturing {', '.join(t.name for t in cap.targets)} into {folder}")
            if demo:
                from .demos import run
                seen = run(demo, stack, dc)
            else:
                obj.ui.info(f"  for {limit:g} s; send your own requests with SSLKEYLOGFILE={cap.keylog.host} "
                            "(curl, Python, Firefox and Chrome read it)")
                with obj.ui.task(f"Capturing for {limit:g} s (Ctrl-C stops early)"):
                    cap.wait()
    finally:
        copied = capture.copy_container_keylog(box, cap.keylog) if box else 0
        capture.give_back(folder)
    _report(obj.ui, cap, copied)
    if not seen:
        sys.exit(1)


def _report(ui, cap: capture.Capture, copied: int) -> None:
    files = [cap.file(t) for t in cap.targets if cap.file(t).exists()]
    for path in files:
        ui.ok(f"{path} ({path.stat().st_size // 1024 + 1} KiB)")
    ui.ok(f"{cap.keylog.host} (TLS secrets of the clients the lab drove; {copied} lines from curl)")
    for name in cap.limited():
        ui.warn(f"{name}: stopped at its limit (--max-mb, or {cap.seconds:g} s)")
    ui.info("open them with the key log (and the PROXY v2 heuristic first, for the vpc side):")
    for line in capture.commands(files, cap.keylog.host):
        ui.info(f"  {line}")
