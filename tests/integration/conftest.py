"""One real lab stack per test session (pytest-docker style).

The stack gets a unique compose project name, its own PKI and configs in a temporary
folder, free subnets from 198.18.0.0/15 and ports Docker picks, so it never collides
with a lab a developer already runs. It is removed with `down -v` at the end, even when
start-up fails; LAB_KEEP=1 keeps it for debugging. When a test failed, the services'
logs are printed in the terminal summary.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from lab import docker_env, probe
from lab.settings import Settings
from lab.stack import Stack
from lab.ui import UI

LOGS_KEY = pytest.StashKey[str]()


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.docker)


def pytest_terminal_summary(terminalreporter, config):
    logs = config.stash.get(LOGS_KEY, "")
    if logs:
        terminalreporter.section("lab stack logs (tests failed)")
        terminalreporter.write_line(logs)


@pytest.fixture(scope="session")
def docker_client():
    return docker_env.client()


@pytest.fixture(scope="session")
def lab_settings(tmp_path_factory, docker_client) -> Settings:
    """Settings for an isolated lab running every design: unique project, free subnets, Docker-picked ports."""
    internet, vpc = docker_env.free_subnets(docker_client, 2)
    any_port = {var: "0" for var in Settings().all_host_ports}
    return Settings.from_env(
        env={**any_port, "LAB_DESIGNS": "all"},
        project=f"mtlslab-test-{secrets.token_hex(3)}",
        home=tmp_path_factory.mktemp("lab"),
        internet_subnet=internet, vpc_subnet=vpc,
    )


@pytest.fixture(scope="session")
def lab_stack(lab_settings, request):
    """The running stack; torn down with `down -v` unless LAB_KEEP=1."""
    stack = Stack(lab_settings)
    ui = UI(verbose=bool(os.environ.get("LAB_VERBOSE")))
    try:
        stack.up(ui, keep_on_failure=True)  # teardown below removes it either way
        yield stack
    finally:
        if request.session.testsfailed:
            try:
                request.config.stash[LOGS_KEY] = stack.compose.logs(tail=40)
            except Exception as exc:  # reporting must not hide the teardown
                request.config.stash[LOGS_KEY] = f"(could not read logs: {exc})"
        if os.environ.get("LAB_KEEP") == "1":
            print(f"\nLAB_KEEP=1: {lab_settings.project} left running; remove it with\n  "
                  + " ".join(stack.compose.argv("down", "-v")))
        else:
            stack.down()


@pytest.fixture(scope="session")
def certs_dir(lab_stack):
    return lab_stack.settings.certs_dir


@pytest.fixture(scope="session")
def nlb_port(lab_stack) -> int:
    return lab_stack.nlb_port()


@pytest.fixture(scope="session")
def runtime_api(lab_stack) -> probe.RuntimeAPI:
    return probe.RuntimeAPI(lab_stack.api_port())


@pytest.fixture(scope="session")
def client_box(lab_stack, docker_client) -> probe.ClientContainer:
    """curl/openssl inside the client container on the internet network."""
    return probe.ClientContainer(docker_client, lab_stack.settings.project)
