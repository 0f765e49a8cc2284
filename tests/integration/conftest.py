"""The integration suite runs on the `lab` fixture of this project's own pytest plugin
(lab/pytest_plugin.py, registered through the pytest11 entry point), with every design
running (`lab_designs = all` in pyproject.toml). The fixtures below are conveniences."""

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
