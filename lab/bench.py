"""`lab bench`: how fast the lab is, and whether its load balancer distorts what you measure.

All figures are medians over ``repeat`` runs on this machine, against loopback ports only:

- full TLS handshakes per second with a client certificate, no resumption (`openssl
  s_time -new`, each connection fetching /healthz so the server's certificate check is
  included): direct to one backend, through the NLB passthrough, through the ALB
  (verify mode) when it runs; and the NLB/direct ratio;
- keep-alive requests: p50/p99 latency and requests per second at a fixed concurrency
  (a Python client on a process pool, one keep-alive connection per process);
- PKI generation time (whole PKI, EC P-256 and RSA-2048);
- `lab up` wall time, warm and with images rebuilt, and all-down to sorry page;
- memory of each container at rest and under load.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import re
import socket
import statistics
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from pathlib import Path

from . import certs, fault, route53
from .client import Host, request
from .credentials import Credentials
from .wait import wait_for
from .designs import DESIGNS
from .designs import DIRECT_LISTENER

CONCURRENCY = 4


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def handshake_rate(certs_dir: Path, address: tuple, seconds: float, clients: int = 1) -> float:
    """Full handshakes per second from ``clients`` parallel openssl s_time processes, wall-clock timed."""
    alice = Credentials(Path(certs_dir), "alice")
    host, port = address
    argv = ["openssl", "s_time", "-connect", f"{host}:{port}", "-new", "-www", "/healthz",
            "-cert", str(alice.cert_path), "-key", str(alice.key_path),
            "-CAfile", str(alice.ca_path), "-time", str(max(1, int(seconds)))]
    started = time.monotonic()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(clients)]
    try:
        outs = [p.communicate(timeout=seconds + 60)[0] for p in procs]
    finally:  # a stuck s_time (a frozen listener) must not outlive the bench
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    wall = time.monotonic() - started
    counts = [re.search(r"(\d+) connections in [\d.]+s", out) for out in outs]
    if not all(counts):
        raise RuntimeError(f"openssl s_time gave no count: {outs[0].strip()[-200:]}")
    return round(sum(int(m.group(1)) for m in counts) / wall, 1)


def _keepalive_worker(args):
    """One process: one keep-alive connection, GET /healthz until the deadline."""
    import http.client

    certs_dir, (host, port), deadline = args
    # a container address is not in the certificate; the CA still is checked
    ctx = Credentials(Path(certs_dir), "alice").ssl_context(check_hostname=False)
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
    latencies, errors = [], 0
    while time.time() < deadline:
        started = time.perf_counter()
        try:
            conn.request("GET", "/healthz", headers={"Host": "www.lab.test"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors += 1
            latencies.append(time.perf_counter() - started)
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
    conn.close()
    return latencies, errors


def keepalive(certs_dir: Path, address: tuple, seconds: float, concurrency: int = CONCURRENCY) -> dict:
    """p50/p99 latency (ms) and requests/s of keep-alive requests at ``concurrency``."""
    deadline = time.time() + seconds
    # fork: the workers start in milliseconds (they only use the standard library)
    with multiprocessing.get_context("fork").Pool(concurrency) as pool:
        results = pool.map(_keepalive_worker, [(str(certs_dir), address, deadline)] * concurrency)
    latencies = sorted(l for lats, _ in results for l in lats)
    errors = sum(e for _, e in results)
    if not latencies:
        return {"p50_ms": None, "p99_ms": None, "rps": 0.0, "errors": errors}
    pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * (len(latencies) - 1)))] * 1000, 2)
    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "rps": round(len(latencies) / seconds, 1),
            "errors": errors}


def pki_seconds(key_type: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        certs.ensure_pki(Path(tmp), key_type=key_type)
        return round(time.perf_counter() - started, 4)


def memory_mb(dc, project: str) -> dict:
    """service -> memory in MiB (usage minus page cache, as `docker stats` shows it)."""
    def one(container):
        # one_shot: a single sample, not the default two a second apart
        stats = container.stats(stream=False, one_shot=True)["memory_stats"]
        cache = stats.get("stats", {}).get("cache", stats.get("stats", {}).get("inactive_file", 0))
        return container.labels.get("com.docker.compose.service"), round((stats.get("usage", 0) - cache) / 2**20, 1)

    containers = dc.containers.list(filters={"label": f"com.docker.compose.project={project}"})
    with ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
        return dict(sorted(pool.map(one, containers)))


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat."""
    # user nice system idle iowait irq softirq steal (guest time is already in user and nice)
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(fields)
    not_busy = fields[3] + fields[4] + (fields[7] if len(fields) > 7 else 0)  # idle, iowait, steal
    return total - not_busy, total


def idle_cpu(dc, project: str, seconds: float) -> dict:
    """CPU the lab uses at rest over ``seconds``, in % of one core: the whole machine (so the
    Docker engine's health-check execs count, which no container's cgroup shows) and each
    of the lab's containers. Meaningful with nothing else running."""
    containers = dc.containers.list(filters={"label": f"com.docker.compose.project={project}"})

    def usage() -> dict:
        with ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
            return dict(pool.map(lambda c: (c.labels.get("com.docker.compose.service"),
                                            c.stats(stream=False, one_shot=True)["cpu_stats"]["cpu_usage"]
                                            ["total_usage"]), containers))

    cpus = multiprocessing.cpu_count()
    before, (busy0, total0), started = usage(), _machine_jiffies(), time.monotonic()
    time.sleep(seconds)
    after, (busy1, total1), wall = usage(), _machine_jiffies(), time.monotonic() - started
    per_service = {svc: round((after[svc] - before[svc]) / 1e9 / wall * 100, 2) for svc in sorted(after)
                   if svc in before}
    return {"seconds": round(wall, 1),
            "machine_percent_of_one_core": round((busy1 - busy0) / max(1, total1 - total0) * cpus * 100, 2),
            "containers_percent_of_one_core": round(sum(per_service.values()), 2),
            "per_service": per_service}


def _reachable(address: tuple) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def paths(stack) -> dict:
    """name -> (host, port): direct to web1, through the NLB, through the ALB (verify) if running.

    The containers' own addresses, where this host reaches them (Linux: it sits on the lab's
    bridges), so Docker's port-publishing proxy is not measured as part of a design; the
    published loopback ports otherwise.
    """
    s = stack.settings
    wanted = {"direct (web1)": ((s.backend_ip("web1"), DIRECT_LISTENER.port), stack.direct_port("web1")),
              "nlb": ((s.nlb_public_ip, 443), stack.nlb_port())}
    if "alb-mtls-verify" in s.designs:
        wanted["alb (mtls verify)"] = ((s.lb_ips("alb")[0], DESIGNS["alb-mtls-verify"].container_port),
                                       stack.design_port("alb-mtls-verify"))
    direct_ok = _reachable(wanted["direct (web1)"][0])
    return {name: (inner if direct_ok else ("127.0.0.1", published)) for name, (inner, published) in wanted.items()}


def run(stack, dc, ui, *, repeat: int = 3, seconds: float = 3.0, lifecycle: bool = True,
        idle: float = 0) -> dict:
    """Every measurement, ``repeat`` times each; returns the report (medians and raw runs).

    ``idle``: seconds of CPU use at rest, measured first (0: skipped).
    """
    s = stack.settings
    report = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cpus": multiprocessing.cpu_count()},
              "settings": {"repeat": repeat, "seconds": seconds, "concurrency": CONCURRENCY},
              "paths": {}}
    if idle:
        with ui.task(f"CPU at rest ({idle:g} s, no traffic)"):
            report["idle_cpu"] = idle_cpu(dc, s.project, idle)
    with ui.task("PKI generation (EC P-256, RSA-2048)"):
        report["pki_seconds"] = {kt: _median([pki_seconds(kt) for _ in range(repeat)]) for kt in ("ec", "rsa")}
    targets_ = paths(stack)
    report["addresses"] = {name: f"{h}:{p}" for name, (h, p) in targets_.items()}
    # Paths take turns in every round, so drift on a busy machine hits them all alike.
    rates = {name: [] for name in targets_}
    loaded = {name: [] for name in targets_}
    with ui.task(f"full handshakes ({repeat} rounds x {len(targets_)} paths x {seconds:g} s)") as task:
        for _ in range(repeat):
            for name, address in targets_.items():
                rates[name].append(handshake_rate(s.certs_dir, address, seconds))
                loaded[name].append(handshake_rate(s.certs_dir, address, seconds, clients=CONCURRENCY))
                task.line(f"{name}: {rates[name][-1]}/s alone, {loaded[name][-1]}/s with {CONCURRENCY} clients")
    for name, address in targets_.items():
        with ui.task(f"{name}: keep-alive requests"):
            runs = [keepalive(s.certs_dir, address, seconds) for _ in range(repeat)]
        report["paths"][name] = {
            "handshakes_per_s": _median(rates[name]), "handshake_runs": rates[name],
            f"handshakes_per_s_{CONCURRENCY}_clients": _median(loaded[name]),
            "keepalive_p50_ms": _median([r["p50_ms"] for r in runs]),
            "keepalive_p99_ms": _median([r["p99_ms"] for r in runs]),
            "keepalive_rps": _median([r["rps"] for r in runs]),
            "errors": sum(r["errors"] for r in runs)}
    direct, nlb = report["paths"]["direct (web1)"], report["paths"]["nlb"]
    report["nlb_over_direct_handshakes"] = round(nlb["handshakes_per_s"] / direct["handshakes_per_s"], 3)
    key = f"handshakes_per_s_{CONCURRENCY}_clients"
    report[f"nlb_over_direct_handshakes_{CONCURRENCY}_clients"] = round(nlb[key] / direct[key], 3)
    report["nlb_over_direct_rps"] = round(nlb["keepalive_rps"] / direct["keepalive_rps"], 3)

    report["memory_mib_at_rest"] = memory_mb(dc, s.project)
    background: dict = {}
    load = threading.Thread(target=lambda: background.update(keepalive(s.certs_dir, targets_["nlb"], seconds)))
    load.start()
    time.sleep(seconds / 2)
    report["memory_mib_under_load"] = memory_mb(dc, s.project)
    load.join()

    if lifecycle:
        report["lifecycle_seconds"] = _lifecycle(stack, dc, ui, repeat)
    return report


def _lifecycle(stack, dc, ui, repeat: int) -> dict:
    """`lab up` warm and with images rebuilt; all-down to sorry page. Restarts the lab."""
    out = {}
    warm = []
    for _ in range(repeat):
        stack.down()
        started = time.monotonic()
        stack.up(ui)
        warm.append(round(time.monotonic() - started, 2))
    out["up_warm"] = _median(warm)
    out["up_warm_runs"] = warm
    stack.down()
    started = time.monotonic()
    stack.up(ui, rebuild=True)
    out["up_with_images_rebuilt"] = round(time.monotonic() - started, 2)
    sorry = []
    faults = fault.Faults(stack, dc)
    reached, back = _sorry_reached(stack)
    for _ in range(repeat):
        started = time.monotonic()
        faults.inject("stop", "all")
        try:
            wait_for(reached, 30, interval=0.05, what="the sorry page")
            sorry.append(round(time.monotonic() - started, 2))
        finally:
            faults.restore("stop", "all")
            faults.api.wait_up(("web1",), timeout=30)
            wait_for(back, 30, interval=0.2, what="www.lab.test answering the NLB again")
    out["all_down_to_sorry"] = _median(sorry)
    out["all_down_to_sorry_runs"] = sorry
    out["all_down_to_sorry_via"] = stack.settings.sorry
    return out


def _sorry_reached(stack):
    """(the sorry page is what a client gets now, the lab is back to normal) for the sorry mode:
    LAB_SORRY=dns, the DNS server answers the sorry site (the NLB fails open); lb, the NLB's
    backup server answers."""
    if stack.settings.sorry == "dns":
        dns_port, s = route53.host_port(stack), stack.settings
        answer = lambda: route53.resolve(dns_port, timeout=1)[0]  # noqa: E731
        return (lambda: answer() == [route53.cdn_ip(s)]), (lambda: answer() == [s.lb_ips(route53.PRIMARY)[0]])
    host, port = Host(stack.settings.certs_dir), stack.nlb_port()
    return (lambda: request(host, "alice", port=port, timeout=2).backend == "sorry"), (lambda: True)


TARGETS = {
    "nlb_over_direct_handshakes": (">=", 0.90),
    "pki_ec_seconds": ("<", 0.5),
    "up_warm_seconds": ("<", 10.0),
    "idle_cpu_percent_of_one_core": ("<", 5.0),
}


def targets(report: dict) -> dict:
    """The issue's targets, checked against this report (None when not measured)."""
    values = {
        "nlb_over_direct_handshakes": report.get("nlb_over_direct_handshakes"),
        "pki_ec_seconds": report.get("pki_seconds", {}).get("ec"),
        "up_warm_seconds": report.get("lifecycle_seconds", {}).get("up_warm"),
        "idle_cpu_percent_of_one_core": report.get("idle_cpu", {}).get("machine_percent_of_one_core"),
    }
    result = {}
    for key, (op, bound) in TARGETS.items():
        value = values[key]
        met = None if value is None else (value >= bound if op == ">=" else value < bound)
        result[key] = {"value": value, "target": f"{op} {bound}", "met": met}
    return result



def print_report(report: dict, console=None) -> None:
    """Draw ``run``'s report (with its ``targets``): paths, ratios, PKI, idle CPU,
    lifecycle, memory, and each target met or missed."""
    from rich.console import Console
    from rich.table import Table

    settings = report["settings"]
    table = Table(title=f"lab bench ({settings['repeat']} x {settings['seconds']:g} s, medians)")
    for col in ("path", "address", "handshakes/s", "with 4 clients", "keep-alive p50", "p99", "req/s (4 conns)"):
        table.add_column(col, justify="right" if col not in ("path", "address") else "left")
    for name, p in report["paths"].items():
        table.add_row(name, report["addresses"][name], f"{p['handshakes_per_s']:.0f}",
                      f"{p['handshakes_per_s_4_clients']:.0f}", f"{p['keepalive_p50_ms']} ms",
                      f"{p['keepalive_p99_ms']} ms", f"{p['keepalive_rps']:.0f}")
    console = console or Console(width=max(Console().width, 140))
    console.print(table)
    console.print(f"NLB / direct: handshakes {report['nlb_over_direct_handshakes']} "
                  f"({report['nlb_over_direct_handshakes_4_clients']} with 4 clients), "
                  f"keep-alive requests {report['nlb_over_direct_rps']}")
    console.print(f"PKI generation: EC {report['pki_seconds']['ec']} s, RSA {report['pki_seconds']['rsa']} s")
    if "idle_cpu" in report:
        rest = report["idle_cpu"]
        busiest = sorted(rest["per_service"].items(), key=lambda kv: -kv[1])[:3]
        console.print(f"at rest over {rest['seconds']} s: the machine {rest['machine_percent_of_one_core']}% of one "
                      f"core, the lab's containers {rest['containers_percent_of_one_core']}% "
                      f"(busiest: {', '.join(f'{k} {v}%' for k, v in busiest)})")
    if "lifecycle_seconds" in report:
        life = report["lifecycle_seconds"]
        console.print(f"lab up: warm {life['up_warm']} s, images rebuilt {life['up_with_images_rebuilt']} s; "
                      f"all down -> sorry page {life['all_down_to_sorry']} s")
    mem = Table(title="memory (MiB)")
    for col in ("service", "at rest", "under load"):
        mem.add_column(col)
    for svc, rest in report["memory_mib_at_rest"].items():
        mem.add_row(svc, str(rest), str(report["memory_mib_under_load"].get(svc, "-")))
    console.print(mem)
    for key, t in report["targets"].items():
        state = "-" if t["met"] is None else ("met" if t["met"] else "MISSED")
        console.print(f"target {key} {t['target']}: {t['value']} {state}")
