"""Steady load from several client source addresses, with curl in the client container.

Each source address runs one curl process that opens a new TLS connection per request
(`Connection: close`) at a fixed rate (`--rate`), so every request is a fresh decision
by the load balancer. curl reports, per request: HTTP status, the X-Backend header,
time taken and curl's exit code (0 = no transport error).
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .containers import ClientContainer

WRITE_OUT = r"%{http_code} %header{x-backend} %{time_total} %{exitcode}\n"


@dataclass(frozen=True)
class Sample:
    """One request of a load run."""

    source: str
    seq: int
    status: int
    backend: str
    seconds: float
    curl_exit: int

    @property
    def ok(self) -> bool:
        """Answered by a backend."""
        return self.curl_exit == 0 and self.status == 200

    @property
    def sorry(self) -> bool:
        """Answered by the sorry page (every backend down): not an error, not served either."""
        return self.curl_exit == 0 and self.backend == "sorry"


def _parse(source: str, out: str) -> list[Sample]:
    samples = []
    for seq, line in enumerate(l for l in out.splitlines() if l.strip()):
        parts = line.split(" ")
        if len(parts) != 4 or not parts[0].isdigit():
            continue  # not a --write-out line
        status, backend, seconds, code = parts
        samples.append(Sample(source, seq, int(status), backend or "-", float(seconds), int(code)))
    return samples


def run_load(box: ClientContainer, sources: list[str], *, rate: int = 10, duration: float = 10.0,
             client: str = "alice", url: str = "https://www.lab.test/whoami",
             max_time: float = 3.0, on_first=None) -> list[Sample]:
    """Load from every address in ``sources`` at ``rate`` requests/s each for ``duration`` s.

    Args:
        on_first: called with a source address as soon as a backend has answered one of
            its requests (curl's output is streamed), so a caller can start a fault only once every
            client is really sending.

    Returns:
        Every request's Sample, in order per source.
    """
    count = max(1, int(rate * duration))

    def one(source: str) -> list[Sample]:
        discard = ["-o", "/dev/null"] * count  # curl pairs each -o with one URL
        argv = box.curl_argv(client, source, [url] * count, write_out=WRITE_OUT, max_time=max_time,
                             extra=discard + ["--rate", f"{rate}/s"])
        out, told = "", False
        # line-buffered: curl's --write-out to a pipe would otherwise arrive all at the end
        # and bounded: an abandoned run (the caller failed) stops by itself
        limit = str(int(duration + max_time + 10))
        for chunk in box.exec_stream(["timeout", limit, "stdbuf", "-oL", *argv]):
            out += chunk
            if not told and on_first and any(x.ok for x in _parse(source, out)):
                told = True
                on_first(source)
        return _parse(source, out)

    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        results = list(pool.map(one, sources))
    return [sample for per_source in results for sample in per_source]


def summarize(samples: list[Sample]) -> dict:
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
