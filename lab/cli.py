"""`lab`: bring the mTLS lab up and down, and see what it is doing.

Settings come from LAB_* environment variables (see lab/settings.py and the README).
Errors print on one line with the fix and exit 1; bad settings exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import docker.errors
from rich.console import Console
from rich.table import Table

from . import __version__
from . import certs as certs_mod
from . import docker_env, fault as fault_mod, images as images_mod
from .designs import DESIGNS, OPTIONAL
from .errors import LabError, SettingsError
from .settings import Settings
from .stack import Stack
from .ui import UI


class Context:
    def __init__(self, quiet: bool, verbose: bool, workdir: str | None = None):
        self.ui = UI(quiet=quiet, verbose=verbose)
        self.workdir = workdir
        self._settings = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            overrides = {"home": Path(self.workdir).resolve()} if self.workdir else {}
            self._settings = Settings.from_env(**overrides)
        return self._settings


_pass_context = click.make_pass_decorator(Context)


def _verbosity(ctx, param, value):
    """-q/-v given after the subcommand (`lab up -q`) count as much as before it."""
    if value and ctx.find_object(Context) is not None:
        obj = ctx.find_object(Context)
        obj.ui = UI(quiet=obj.ui.quiet or param.name == "quiet",
                    verbose=obj.ui.verbose or param.name == "verbose")
    return value


def pass_ctx(func):
    """Pass the Context, and accept -q/-v on the subcommand too."""
    func = _pass_context(func)
    func = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_verbosity,
                        help="Stream the output of docker, debootstrap, compose.")(func)
    return click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_verbosity,
                        help="Print errors only.")(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-q", "--quiet", is_flag=True, help="Print errors only.")
@click.option("-v", "--verbose", is_flag=True, help="Stream the output of docker, debootstrap, compose.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Where certs/ and build/ live (default: the checkout, or ./.lab; env LAB_HOME).")
@click.version_option(__version__, prog_name="lab")
@click.pass_context
def cli(ctx, quiet, verbose, workdir):
    """The mTLS load-balancer lab: NLB passthrough keeps client-certificate auth."""
    ctx.obj = Context(quiet, verbose, workdir)


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _curl_hint(settings: Settings, port: int) -> str:
    c = _rel(settings.certs_dir)
    return (f"curl --cacert {c}/ca.pem --cert {c}/clients/alice.crt --key {c}/clients/alice.key "
            f"--resolve www.lab.test:{port}:127.0.0.1 https://www.lab.test:{port}/whoami")


@cli.command()
@click.option("--design", "designs", multiple=True, type=click.Choice(list(DESIGNS)),
              help="Run this design's front end too (repeatable); `nlb` alone means only the NLB.")
@click.option("--all-designs", is_flag=True, help="Run every design side by side.")
@click.option("--rebuild", is_flag=True, help="Rebuild the images without cache first.")
@click.option("--keep-on-failure", is_flag=True, help="Leave a stack that failed to start, for debugging.")
@pass_ctx
def up(obj, designs, all_designs, rebuild, keep_on_failure):
    """Build what is missing and start the lab; returns when every service is healthy.

    The NLB always runs. Designs chosen here are remembered by the next `lab up`.
    """
    settings = obj.settings
    if designs or all_designs:
        chosen = OPTIONAL if all_designs else tuple(d for d in OPTIONAL if d in designs)
        settings = settings.with_(designs=chosen, designs_auto=False)
    stack = Stack(settings)
    stack.up(obj.ui, keep_on_failure=keep_on_failure, rebuild=rebuild)
    port = stack.nlb_port()
    obj.ui.ok(f"{settings.project} is up: NLB on {settings.bind}:{port}")
    for name in stack.settings.designs:
        obj.ui.ok(f"{name} on {settings.bind}:{stack.design_port(name)}  ({DESIGNS[name].summary})")
    obj.ui.info(f"  try: {_curl_hint(settings, port)}")


@cli.command()
@pass_ctx
def down(obj):
    """Stop the lab and remove its containers, networks and volumes."""
    docker_env.client()
    docker_env.ensure_compose()
    Stack(obj.settings).down(obj.ui)


@cli.command()
@pass_ctx
def reload(obj):
    """Re-render configs and reload nginx and HAProxy in place (e.g. after `lab certs`)."""
    docker_env.ensure_compose()
    Stack(obj.settings).reload(obj.ui)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(obj, as_json):
    """Services, health, ports, designs, certificate expiry and the stick tables."""
    from .status import collect

    dc = docker_env.client()
    docker_env.ensure_compose()
    report = collect(Stack(obj.settings), dc)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    console = Console()
    table = Table(title=f"{report['project']}: designs up: {', '.join(report['designs_up']) or 'none'}")
    for col in ("service", "state", "health", "published ports"):
        table.add_column(col)
    for r in report["services"]:
        colour = "green" if r["health"] in ("healthy", "-") and r["state"] == "running" else "red"
        table.add_row(r["service"], f"[{colour}]{r['state']}[/]", r["health"], "\n".join(r["ports"]))
    console.print(table)
    nets = report["networks"]
    console.print(f"networks: internet {nets['internet']}, vpc {nets['vpc']}; "
                  f"client addresses {nets['client_addresses']}")
    certs_table = Table(title="certificates")
    for col in ("certificate", "expires", "days left", "state"):
        certs_table.add_column(col)
    for r in report["certificates"]:
        colour = {"ok": "green", "expires soon": "yellow"}.get(r["state"], "red")
        certs_table.add_row(r["name"], (r["expires"] or "-")[:10], str(r["days_left"] if r["days_left"] is not None else "-"),
                            f"[{colour}]{r['state']}[/]")
    console.print(certs_table)
    for lb, entries in report["stick_tables"].items():
        sticks = Table(title=f"{lb} stick table (client IP -> server)")
        sticks.add_column("client IP")
        sticks.add_column("server")
        for ip, server in sorted(entries.items()):
            sticks.add_row(ip, server)
        console.print(sticks if entries else f"{lb} stick table: empty")
    for warning in report["warnings"]:
        obj.ui.warn(warning)


@cli.command()
@click.option("--force", is_flag=True, help="Renew everything, a new CA included.")
@click.option("--key-type", type=click.Choice(["ec", "rsa"]), default=None,
              help="Key algorithm: ec (P-256, default for a new PKI) or rsa (2048).")
@click.option("--p12", is_flag=True, help="Also write PKCS#12 bundles (certs/p12/<client>.p12) for browsers.")
@click.option("--p12-password", envvar="LAB_P12_PASSWORD", default=None,
              help="Their password (env LAB_P12_PASSWORD; default: printed).")
@click.option("--legacy", is_flag=True, help="Legacy PKCS#12 encryption (3DES, SHA-1 MAC): what macOS Keychain needs.")
@pass_ctx
def certs(obj, force, key_type, p12, p12_password, legacy):
    """Generate (or top up) the lab PKI in certs/."""
    s = obj.settings
    report = certs_mod.ensure_pki(s.certs_dir, key_type=key_type or s.key_type, force=force)
    if report.issued:
        obj.ui.ok(f"issued {', '.join(report.issued)} ({report.key_type}) in {_rel(report.root)}")
    elif report.crl_signed:
        obj.ui.ok(f"re-signed the CRL in {_rel(report.root)}")
    if report.changed:
        obj.ui.info("  a running lab loads them with `lab reload` (or `lab up`)")
    else:
        obj.ui.ok(f"{_rel(report.root)} is complete and current ({report.key_type}); "
                  "`lab certs --force` renews it")
    bundles_dir = s.certs_dir / "p12"
    if report.issued and bundles_dir.exists() and not (p12 or legacy):
        import shutil

        shutil.rmtree(bundles_dir)  # they held the certificates just replaced
        obj.ui.warn(f"removed {_rel(bundles_dir)}: its bundles held replaced certificates; "
                    "`lab certs --p12` writes new ones")
    if p12 or legacy:
        from .p12 import DEFAULT_PASSWORD, write_bundles

        bundles = write_bundles(s.certs_dir, p12_password or DEFAULT_PASSWORD, legacy=legacy)
        kind = "legacy encryption, for macOS Keychain" if legacy else "AES-256, for Firefox, Chrome, Windows"
        obj.ui.ok(f"PKCS#12 bundles ({kind}) in {_rel(bundles.folder)}: one per client")
        if not p12_password:
            obj.ui.info(f"  their password: {DEFAULT_PASSWORD}  (choose one with --p12-password)")
    if obj.ui.quiet:
        return
    table = Table(title="client certificates")
    for col in ("file", "demonstrates"):
        table.add_column(col)
    lay = certs_mod.Layout(s.certs_dir)
    for spec in certs_mod.CLIENTS:
        table.add_row(_rel(lay.client_cert(spec.name)), spec.demonstrates)
    Console(stderr=True).print(table)


@cli.command()
@click.option("--rebuild", is_flag=True, help="Rebuild the role images without cache.")
@click.option("--no-pull", is_flag=True, help="Never pull the base image; bootstrap it if missing.")
@pass_ctx
def images(obj, rebuild, no_pull):
    """Make sure the base image (present, pulled or bootstrapped) and the lab images exist."""
    dc = docker_env.client()
    refs = images_mod.ensure_images(dc, obj.ui, rebuild=rebuild, pull=not no_pull)
    for role, ref in refs.items():
        obj.ui.ok(f"{role}: {ref}")


@cli.command()
@click.argument("services", nargs=-1)
@click.option("-f", "--follow", is_flag=True, help="Keep streaming.")
@click.option("--tail", default="100", show_default=True, help="Lines per service ('all' for all).")
@pass_ctx
def logs(obj, services, follow, tail):
    """Show the services' logs (nginx and HAProxy log one JSON line per request)."""
    docker_env.client()
    docker_env.ensure_compose()
    stack = Stack(obj.settings)
    if not stack.compose.env_file.exists():
        raise LabError(f"{obj.settings.project} has never been started here: run `lab up` first")
    sys.exit(stack.compose.call("logs", "--tail", str(tail), *(["--follow"] if follow else []), *services))


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--lb", default="nlb", show_default=True, type=click.Choice(["nlb", "nlb-tls", "alb"]),
              help="Which load balancer.")
@click.argument("command", nargs=-1, required=True)
@pass_ctx
def api(obj, lb, command):
    """Send one command to HAProxy's runtime API, e.g. `lab api show table web`.

    The API is a UNIX socket in build/<project>/run/<lb>/, reachable from this host only.
    """
    click.echo(Stack(obj.settings).runtime_api(lb).command(" ".join(command)).rstrip("\n"))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print sslyze's findings as JSON.")
@pass_ctx
def scan(obj, as_json):
    """Scan the NLB and each backend with sslyze (installed into .venv-sslyze on first use)."""
    from .scan import ensure_sslyze, scan as run_scan, verdicts

    docker_env.ensure_compose()
    stack = Stack(obj.settings)
    python = ensure_sslyze(obj.settings.home / ".venv-sslyze", obj.ui)
    targets = {"nlb": ("127.0.0.1", stack.nlb_port())}
    targets.update({b: ("127.0.0.1", stack.direct_port(b)) for b in ("web1", "web2")})
    with obj.ui.task(f"sslyze against {', '.join(targets)}"):
        findings = run_scan(python, obj.settings.certs_dir, targets)
    if as_json:
        click.echo(json.dumps(findings, indent=2))
        return
    table = Table(title="sslyze findings")
    for col in ("target", "client auth", "acceptable CAs", "versions accepted", "chain vs lab CA"):
        table.add_column(col)
    failed = False
    for f in findings:
        v = verdicts(f)
        failed |= not all(v.values())
        accepted = [k for k, ok in f.get("versions", {}).items() if ok is True]
        table.add_row(f"{f['name']} {f['target']}", f.get("client_auth_requirement", f.get("error", "?")),
                      "\n".join(f.get("acceptable_client_ca_names", [])), ", ".join(accepted),
                      "valid" if f.get("chain_valid") else "INVALID")
    Console().print(table)
    obj.ui.info("OPTIONAL: nginx finishes the handshake without a certificate and refuses at HTTP "
                "level (400), so sslyze cannot see that the certificate is required.")
    if failed:
        raise LabError("sslyze found a listener that breaks the lab's TLS rules (see the table)")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the results and their evidence as JSON.")
@pass_ctx
def compare(obj, as_json):
    """Probe every running design with the same clients and compare them in one table."""
    from .compare import COLUMNS, compare as run_compare

    dc = docker_env.client()
    docker_env.ensure_compose()
    stack = Stack(obj.settings)
    with obj.ui.task("Probing every running design (valid, rogue-CA and no certificate; SQL "
                     "injection; stickiness; client address)"):
        results = run_compare(stack, dc)
    if not results:
        raise LabError(f"{obj.settings.project} is not running: `lab up --all-designs` first")
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    table = Table(title="the same clients against every running design", show_lines=True)
    table.add_column("design", style="bold")
    for _, title in COLUMNS:
        table.add_column(title)
    for name, r in results.items():
        table.add_row(name, *(r[key] for key, _ in COLUMNS))
    Console(width=max(Console().width, 150)).print(table)
    missing = [d for d in DESIGNS if d not in results]
    if missing:
        obj.ui.info(f"not running: {', '.join(missing)} (`lab up --all-designs` to compare them too)")


@cli.command()
@click.argument("name", required=False)
@pass_ctx
def demo(obj, name):
    """Show one seed claim live and check it (exits 1 if not observed). No NAME: list them."""
    from .demos import DEMOS, run

    if not name:
        for key, (_, claim, needs) in DEMOS.items():
            click.echo(f"{key:18} {claim}  [needs: {', '.join(needs)}]")
        return
    dc = docker_env.client()
    docker_env.ensure_compose()
    if not run(name, Stack(obj.settings), dc):
        sys.exit(1)


@cli.command()
@click.option("--repeat", default=3, show_default=True, type=click.IntRange(1),
              help="Runs per measurement (medians are reported).")
@click.option("--seconds", default=3.0, show_default=True, type=click.FloatRange(0.5),
              help="Length of each load run.")
@click.option("--no-lifecycle", is_flag=True, help="Skip the `lab up` and failover timings (they restart the lab).")
@click.option("--idle", default=60.0, show_default=True, type=click.FloatRange(0),
              help="Seconds of CPU use measured at rest, first (0: skip).")
@click.option("--smoke", is_flag=True, help="A few seconds: one short run of each, no lifecycle, no idle figure.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the JSON report here (default build/<project>/bench.json).")
@pass_ctx
def bench(obj, repeat, seconds, no_lifecycle, idle, smoke, as_json, out):
    """Handshake rates, latency, PKI and start-up times, memory: measured side by side."""
    from .bench import run as run_bench, targets

    if smoke:
        repeat, seconds, no_lifecycle, idle = 1, 1.0, True, 0
    dc = docker_env.client()
    docker_env.ensure_compose()
    stack = Stack(obj.settings)
    if not any(r["state"] == "running" for r in stack.services() if r["service"] == "nlb"):
        raise LabError(f"{obj.settings.project} is not running: `lab up` (or `lab up --all-designs`) first")
    report = run_bench(stack, dc, obj.ui, repeat=repeat, seconds=seconds, lifecycle=not no_lifecycle, idle=idle)
    report["targets"] = targets(report)
    path = Path(out) if out else stack.settings.build_dir / "bench.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"lab bench ({repeat} x {seconds:g} s, medians)")
    for col in ("path", "address", "handshakes/s", "with 4 clients", "keep-alive p50", "p99", "req/s (4 conns)"):
        table.add_column(col, justify="right" if col not in ("path", "address") else "left")
    for name, p in report["paths"].items():
        table.add_row(name, report["addresses"][name], f"{p['handshakes_per_s']:.0f}",
                      f"{p['handshakes_per_s_4_clients']:.0f}", f"{p['keepalive_p50_ms']} ms",
                      f"{p['keepalive_p99_ms']} ms", f"{p['keepalive_rps']:.0f}")
    console = Console(width=max(Console().width, 140))
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
    obj.ui.info(f"report written to {_rel(path)}")


@cli.group()
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
    _print_fault_report(report)


def _print_fault_report(r: dict) -> None:
    hc = r["health_checks"]
    table = Table(title=f"fault: {r['fault']} {r['target']}  (health checks: inter {hc['inter']}, "
                        f"fall {hc['fall']}, rise {hc['rise']}, timeout {hc['timeout']})")
    table.add_column("measure")
    table.add_column("value")
    rows = [
        ("requests", f"{r['requests']} ({r['load']['sources']} clients x {r['load']['rate_per_source']}/s "
                     f"x {r['load']['seconds']:.0f} s)"),
        ("served by a backend", str(r["served"])),
        ("answered by the sorry page", str(r["sorry_page"])),
        ("failed", f"{r['failed']} {r['failed_by_kind'] or ''}"),
        ("latency p50 / p99 / max", " / ".join(f"{v * 1000:.0f} ms" if v is not None else "-"
                                               for v in r["latency_s"].values())),
        ("HAProxy saw it after", ", ".join(f"{k}: {v} s" for k, v in r["detected_after_s"].items()) or "-"),
        ("back UP after undo", ", ".join(f"{k}: {v} s" for k, v in r["back_up_after_s"].items()) or "-"),
        ("host client: first sorry page after", f"{r['host_first_sorry_after_s']} s" if r["host_first_sorry_after_s"] is not None else "-"),
        ("sorry page ever pinned", "yes" if r["sorry_in_stick_table"] else "no"),
    ]
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    moves = Table(title="where each client was pinned")
    for col in ("client", "before", "path during the run", "after"):
        moves.add_column(col)
    for src, before in r["pinned_before"].items():
        moves.add_row(src, before, " -> ".join(r["path_per_source"].get(src, [])), r["pinned_after"][src])
    Console().print(moves)


@cli.command()
@pass_ctx
def setup(obj):
    """Check the Docker engine and link Compose v2 into the docker CLI if it is missing."""
    docker_env.client()
    obj.ui.ok("Docker engine answers")
    version = docker_env.ensure_compose()
    obj.ui.ok(f"docker compose {version}")


def main(argv=None) -> None:
    """Entry point: run the CLI, turning every expected failure into a one-line message."""
    try:
        cli.main(args=argv, prog_name="lab", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LabError as exc:
        UI().error(str(exc))
        sys.exit(1)
    except SettingsError as exc:
        UI().error(f"bad setting: {exc}")
        sys.exit(2)
    except docker.errors.DockerException as exc:
        UI().error(f"Docker: {_first_line(exc)} (check `docker info`, then `lab status`)")
        sys.exit(1)
    except (OSError, ValueError) as exc:  # a refused connection, a damaged file
        UI().error(f"{type(exc).__name__}: {_first_line(exc)} (is the lab up? `lab status`; "
                   "run with -v or see `lab logs` for details)")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [repr(exc)])[0]
