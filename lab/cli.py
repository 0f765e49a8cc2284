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

from . import __version__
from . import certs as certs_mod
from . import docker_env, images as images_mod
from .cli_context import Context, pass_ctx
from .designs import BACKENDS, DESIGNS, LOAD_BALANCERS, OPTIONAL
from .errors import LabError, SettingsError
from .settings import Settings
from .stack import Stack
from .ui import UI


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
    from .capture import remove_captures  # lab capture's files, unless kept with --keep

    if (removed := remove_captures(obj.settings)) is not None:
        obj.ui.ok(f"removed {_rel(removed)}")


@cli.command()
@pass_ctx
def reload(obj):
    """Re-render configs and reload nginx, HAProxy and the DNS server in place (e.g. after `lab certs`)."""
    docker_env.ensure_compose()
    Stack(obj.settings).reload(obj.ui)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(obj, as_json):
    """Services, health, ports, designs, certificate expiry and the stick tables."""
    from .status import collect, print_report

    dc = docker_env.client()
    docker_env.ensure_compose()
    report = collect(Stack(obj.settings), dc)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    print_report(report)
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
    from .p12 import DEFAULT_PASSWORD, remove_bundles, write_bundles

    if report.issued and not (p12 or legacy) and (removed := remove_bundles(s.certs_dir)):
        obj.ui.warn(f"removed {_rel(removed)}: its bundles held replaced certificates; "
                    "`lab certs --p12` writes new ones")
    if p12 or legacy:

        bundles = write_bundles(s.certs_dir, p12_password or DEFAULT_PASSWORD, legacy=legacy)
        kind = "legacy encryption, for macOS Keychain" if legacy else "AES-256, for Firefox, Chrome, Windows"
        obj.ui.ok(f"PKCS#12 bundles ({kind}) in {_rel(bundles.folder)}: one per client")
        if not p12_password:
            obj.ui.info(f"  their password: {DEFAULT_PASSWORD}  (choose one with --p12-password)")
    if obj.ui.quiet:
        return
    certs_mod.print_clients(s.certs_dir, shown=_rel)


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
@click.option("--connection", is_flag=True, help="AWS-style connection logs (SERVICES: at most one design).")
@pass_ctx
def logs(obj, services, follow, tail, connection):
    """Show the services' logs (nginx and HAProxy log one JSON line per request)."""
    if connection:
        from .connlog import show
        return show(obj.settings.build_dir, *services[:1], echo=click.echo)
    docker_env.client()
    docker_env.ensure_compose()
    stack = Stack(obj.settings)
    if not stack.compose.env_file.exists():
        raise LabError(f"{obj.settings.project} has never been started here: run `lab up` first")
    sys.exit(stack.compose.call("logs", "--tail", str(tail), *(["--follow"] if follow else []), *services))


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--lb", default="nlb", show_default=True, type=click.Choice(list(LOAD_BALANCERS)),
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
    from .scan import ensure_sslyze, print_findings, scan as run_scan

    docker_env.ensure_compose()
    stack = Stack(obj.settings)
    python = ensure_sslyze(obj.settings.home / ".venv-sslyze", obj.ui)
    targets = {"nlb": ("127.0.0.1", stack.nlb_port())}
    targets.update({b: ("127.0.0.1", stack.direct_port(b)) for b in BACKENDS})
    with obj.ui.task(f"sslyze against {', '.join(targets)}"):
        findings = run_scan(python, obj.settings.certs_dir, targets)
    if as_json:
        click.echo(json.dumps(findings, indent=2))
        return
    failed = print_findings(findings)
    obj.ui.info("OPTIONAL: nginx finishes the handshake without a certificate and refuses at HTTP "
                "level (400), so sslyze cannot see that the certificate is required.")
    if failed:
        raise LabError("sslyze found a listener that breaks the lab's TLS rules (see the table)")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the results and their evidence as JSON.")
@pass_ctx
def compare(obj, as_json):
    """Probe every running design with the same clients and compare them in one table."""
    from .compare import compare as run_compare, print_table

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
    print_table(results)
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
@click.option("--cold", is_flag=True, help="Only the first start: `make lab-up` in a fresh clone with no images "
              "(about a minute; an image namespace of its own, removed after).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the JSON report here (default build/<project>/bench.json).")
@pass_ctx
def bench(obj, repeat, seconds, no_lifecycle, idle, smoke, cold, as_json, out):
    """Handshake rates, latency, PKI and start-up times, memory: measured side by side."""
    from .bench import print_report, run as run_bench, targets

    if cold:
        from .bench_cold import measure
        report = {"cold_start": measure(docker_env.client(), obj.ui)}
        path = Path(out) if out else obj.settings.build_dir / "bench-cold.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        c = report["cold_start"]
        click.echo(json.dumps(report, indent=2) if as_json else
                   f"cold `make lab-up`: {c['make_lab_up_s']} s (base image: {c['base_image']}; "
                   f"target < {c['target_s']:g} s: {'met' if c['met'] else 'missed'})")
        obj.ui.info(f"report written to {_rel(path)}")
        return
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
    print_report(report)
    obj.ui.info(f"report written to {_rel(path)}")


from .cli_fault import fault  # noqa: E402 (the fault group, in a module of its own)

cli.add_command(fault)


@cli.command()
@pass_ctx
def setup(obj):
    """Check the Docker engine and link Compose v2 into the docker CLI if it is missing."""
    docker_env.client()
    obj.ui.ok("Docker engine answers")
    version = docker_env.ensure_compose()
    obj.ui.ok(f"docker compose {version}")


cli.add_command(__import__("lab.cli_explain", fromlist=["explain"]).explain)  # `lab explain`, own module
cli.add_command(__import__("lab.cli_dashboard", fromlist=["dashboard"]).dashboard)  # `lab dashboard`
cli.add_command(__import__("lab.cli_capture", fromlist=["capture_cmd"]).capture_cmd)  # `lab capture`
cli.add_command(__import__("lab.cli_migrate", fromlist=["migrate"]).migrate)  # `lab migrate`


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
