"""`lab dashboard`'s web server (aiohttp): the page and its assets from the package, one
server-sent event stream of looks (lab/dashboard/hub.py), on 127.0.0.1 only.

Read-only by construction: there are only GET routes, and every other method is answered
405 before any route is looked up. Requests naming another host than this machine's
loopback are refused (403): a web page elsewhere cannot read the lab's state through a DNS
name it points at 127.0.0.1 (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import errno
import signal
from pathlib import Path

from aiohttp import web

from ..errors import PortInUse
from .hub import Hub

STATIC = Path(__file__).resolve().parent / "static"
BIND = "127.0.0.1"
READ_ONLY = ("GET", "HEAD")
LOOPBACK_NAMES = ("127.0.0.1", "localhost")
# Everything the page uses comes from this server: no CDN, no inline script.
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
HUB = web.AppKey("hub", Hub)


@web.middleware
async def guard(request: web.Request, handler):
    if request.method not in READ_ONLY:
        raise web.HTTPMethodNotAllowed(request.method, READ_ONLY, text="the dashboard is read-only\n")
    host = (request.host or "").rsplit(":", 1)[0] if not (request.host or "").startswith("[") else ""
    if host not in LOOPBACK_NAMES:
        raise web.HTTPForbidden(text="open the dashboard as http://127.0.0.1:<port>/\n")
    response = await handler(request)
    response.headers.update(HEADERS)
    return response


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one `data:` line of JSON per look, while the page stays."""
    hub = request.app[HUB]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **HEADERS})
    await response.prepare(request)
    queue = hub.subscribe()
    try:
        while (data := await queue.get()) is not None:
            await response.write(f"data: {data}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the page went away (or the dashboard stops)
    finally:
        hub.unsubscribe(queue)
    return response


async def meta(request: web.Request) -> web.Response:
    """How many pages are open and how many looks were taken (the cost, for tests and docs)."""
    hub = request.app[HUB]
    return web.json_response({"pages": hub.pages, "polls": hub.polls, "interval": hub.interval})


def make_app(hub: Hub) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[HUB] = hub
    app.router.add_get("/", index)
    app.router.add_get("/events", events)
    app.router.add_get("/api/meta", meta)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)

    async def stop_streams(app):
        app[HUB].close()
    app.on_shutdown.append(stop_streams)
    return app


async def serve(hub: Hub, port: int, on_ready) -> None:
    """Serve until SIGINT or SIGTERM; ``on_ready(url)`` once listening.

    Raises:
        PortInUse: naming the port and the fix.
    """
    runner = web.AppRunner(make_app(hub), access_log=None, shutdown_timeout=2)
    await runner.setup()
    try:
        await web.TCPSite(runner, BIND, port).start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"{BIND}:{port} is in use (another `lab dashboard`?): stop that program, "
                            "or choose another port with --port N or LAB_DASHBOARD_PORT=N") from None
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        on_ready(f"http://{BIND}:{runner.addresses[0][1]}/")
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
