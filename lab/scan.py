"""External validation with a tool nobody here wrote: sslyze, in its own virtualenv.

sslyze pins an older `cryptography` than the lab uses, so it lives in .venv-sslyze
(created on first use) and runs lab/external/sslyze_probe.py, which reports JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .certs import Layout
from .errors import CommandFailed, LabError
from .proc import run, stream

SSLYZE = "sslyze==6.3.1"
PROBE = Path(__file__).resolve().parent / "external" / "sslyze_probe.py"


def ensure_sslyze(venv: Path, ui) -> Path:
    """The virtualenv's python, with sslyze installed (created on first use).

    Raises:
        LabError: when the virtualenv or the install fails (the pip output's tail shown).
    """
    python = venv / "bin" / "python"
    if python.exists() and run([str(python), "-c", "import sslyze"], check=False).returncode == 0:
        return python
    with ui.task(f"Installing {SSLYZE} into {venv}") as task:
        try:
            stream([sys.executable, "-m", "venv", str(venv)], task.line)
            stream([str(python), "-m", "pip", "install", "--disable-pip-version-check", SSLYZE], task.line)
        except CommandFailed as exc:
            raise LabError(f"could not install {SSLYZE} into {venv}: {exc}; check PyPI access "
                           "(or a pip mirror in pip.conf) and run `lab scan` again") from exc
    return python


def scan(python: Path, certs_dir: Path, targets: dict, timeout: int = 2) -> list[dict]:
    """Run sslyze against ``targets`` (name -> (ip, port)) and return its findings."""
    argv = [str(python), "-W", "ignore", str(PROBE), "--ca", str(Layout(certs_dir).ca_cert),
            "--timeout", str(timeout)]
    for name, (ip, port) in targets.items():
        argv += ["--target", f"{name}={ip}:{port}"]
    return json.loads(run(argv, timeout=300).stdout)


def verdicts(finding: dict) -> dict:
    """The lab's expectations, checked: client CA requested, TLS 1.2/1.3 only, chain valid."""
    versions = finding.get("versions", {})
    return {
        "client_certificate_requested": finding.get("client_auth_requirement") in ("OPTIONAL", "REQUIRED"),
        "names_the_lab_ca": "CN=mTLS Lab Root CA,O=mTLS Lab" in finding.get("acceptable_client_ca_names", []),
        "only_tls_1_2_and_1_3": versions == {"SSL_2_0": False, "SSL_3_0": False, "TLS_1_0": False,
                                             "TLS_1_1": False, "TLS_1_2": True, "TLS_1_3": True},
        "chain_valid_against_lab_ca": finding.get("chain_valid") is True,
    }


def print_findings(findings: list, console: Console | None = None) -> bool:
    """Draw sslyze's findings, one row per target.

    Returns:
        True when a listener breaks the lab's TLS rules (a verdict failed).
    """
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
    (console or Console()).print(table)
    return failed
