"""The integration suite runs on the `lab` fixture of this project's own pytest plugin
(lab/pytest_plugin.py, registered through the pytest11 entry point), with every design
running (`lab_designs = all` in pyproject.toml). The fixtures below are conveniences."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.client import Container, Host
from lab.containers import ClientContainer
from lab.runtime_api import RuntimeAPI


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where the browser tests save their screenshots: a temporary folder, or the folder
    LAB_SCREENSHOTS names (`LAB_SCREENSHOTS=docs/images make test` refreshes the docs' ones),
    so a test run leaves the checkout as it was."""
    chosen = os.environ.get("LAB_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def docker_client(lab_docker):
    return lab_docker


@pytest.fixture(scope="session")
def certs_dir(lab):
    return lab.certs_dir


@pytest.fixture(scope="session")
def nlb_port(lab) -> int:
    return lab.nlb_port


@pytest.fixture(scope="session")
def runtime_api(lab) -> RuntimeAPI:
    return lab.runtime_api


@pytest.fixture(scope="session")
def client_box(lab, docker_client) -> ClientContainer:
    """curl/openssl inside the client container on the internet network."""
    return ClientContainer(docker_client, lab.settings.project)


@pytest.fixture(scope="session")
def from_client(client_box) -> Container:
    """The client container's transport (curl) for lab.client.request."""
    return Container(client_box)


@pytest.fixture(scope="session")
def from_host(certs_dir) -> Host:
    """The host's transport (Python ssl, published ports on 127.0.0.1) for lab.client.request."""
    return Host(certs_dir)


@pytest.fixture(scope="session")
def lab_cli(lab):
    """lab_cli(*args, env=None, timeout=300): run `python -m lab *args` against this session's
    lab (its LAB_HOME, LAB_PROJECT and LAB_CERTS_DIR, no other LAB_* of the caller's, plus
    ``env``); returns the CompletedProcess, output captured as text."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    base.update({"LAB_HOME": str(lab.settings.home), "LAB_PROJECT": lab.settings.project,
                 "LAB_CERTS_DIR": str(lab.settings.certs_dir)})

    def run(*args, env=None, timeout=300):
        return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                              env={**base, **(env or {})}, check=False, timeout=timeout)

    return run
