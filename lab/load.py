"""Steady load from several client source addresses, with curl in the client container.

Each source address runs one curl process that opens a new TLS connection per request
(`Connection: close`) at a fixed rate (`--rate`), so every request is a fresh decision
by the load balancer. Every request is an Answer (lab/answer.py) with its HTTP status,
the X-Backend header, the time taken and curl's exit code (0 = no transport error).
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor

from .answer import Answer
from .client import Container, Request, parse_curl


def run_load(via: Container, sources: list[str], *, rate: int = 10, duration: float = 10.0,
             client: str = "alice", path: str = "/whoami", max_time: float = 3.0,
             on_first=None) -> list[Answer]:
    """Load from every address in ``sources`` at ``rate`` requests/s each for ``duration`` s.

    Args:
        via: the client container's transport.
        on_first: called with a source address as soon as a backend has answered one of
            its requests (curl's output is streamed), so a caller can start a fault only once every
            client is really sending.

    Returns:
        Every request's Answer (bodies discarded), in order per source.
    """
    count = max(1, int(rate * duration))

    def one(source: str) -> list[Answer]:
        req = Request(client, path=path, source=source, count=count, timeout=max_time)
        discard = ["-o", "/dev/null"] * count  # curl pairs each -o with one URL
        argv = via.argv(req, extra=discard + ["--rate", f"{rate}/s"])
        out, told = "", False
        # line-buffered: curl's --write-out to a pipe would otherwise arrive all at the end
        # and bounded: an abandoned run (the caller failed) stops by itself
        limit = str(int(duration + max_time + 10))
        for chunk in via.box.exec_stream(["timeout", limit, "stdbuf", "-oL", *argv]):
            out += chunk
            if not told and on_first and any(x.ok for x in parse_curl(out, source=source)):
                told = True
                on_first(source)
        return parse_curl(out, source=source, argv=argv)

    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        results = list(pool.map(one, sources))
    return [answer for per_source in results for answer in per_source]


def summarize(samples: list[Answer]) -> dict:
    """Totals, failures and the backends each source was sent to, in order of first use."""
    by_source: dict[str, list[str]] = collections.defaultdict(list)
    for s in samples:
        if (s.ok or s.sorry) and (not by_source[s.source] or by_source[s.source][-1] != s.backend):
            by_source[s.source].append(s.backend)
    failed = [s for s in samples if not (s.ok or s.sorry)]
    times = sorted(s.seconds for s in samples if s.ok)
    return {
        "requests": len(samples),
        "served": sum(s.ok for s in samples),
        "sorry_page": sum(s.sorry for s in samples),
        "failed": len(failed),
        "failed_by_kind": dict(collections.Counter(
            f"curl exit {s.curl_exit}" if s.curl_exit else f"HTTP {s.status}" for s in failed)),
        "backends": dict(collections.Counter(s.backend for s in samples if s.ok)),
        "latency_s": {"p50": _pct(times, 50), "p99": _pct(times, 99), "max": times[-1] if times else None},
        "path_per_source": dict(by_source),
    }


def _pct(sorted_values: list[float], pct: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1)))
    return round(sorted_values[index], 4)
