"""pytest plugin (entry point `pytest11`): the lab as session fixtures for any test suite.

    def test_alice_gets_in(lab, lab_client):
        reply = lab_client("alice").get(lab.url("/whoami"))
        assert reply.json()["client_verify"] == "SUCCESS"

    def test_nobody_without_a_certificate(lab, lab_client):
        assert lab_client(None).get(lab.url("/whoami")).status_code == 400

    def test_from_a_chosen_address(lab):
        (reply,) = lab.from_ip(lab.settings.client_pool.users[0]).get("alice")
        assert reply.body["client_ip"] == lab.settings.client_pool.users[0]

The `lab` fixture starts one isolated stack per session (its own compose project, PKI
and configs in a temporary folder, free subnets, ports Docker picks), and removes it with
`down -v` at the end even when start-up failed; LAB_KEEP=1 keeps it. When a test failed,
the services' last log lines are printed in the terminal summary.

Options: `--lab-designs` (or ini `lab_designs`): "all", or a comma list of the contrast
designs to run beside the NLB (default: none).
"""

from __future__ import annotations

import contextlib
import os
import secrets

import pytest
import requests

from . import containers, designs, docker_env, readiness
from .client import Container, from_url, request_many
from .credentials import Credentials
from .runtime_api import RuntimeAPI
from .settings import Settings
from .stack import Stack
from .ui import UI

_LOGS = pytest.StashKey[str]()


def pytest_addoption(parser):
    group = parser.getgroup("mtls-lab")
    group.addoption("--lab-designs", default=None,
                    help="contrast designs to run beside the NLB: 'all' or a comma list (default: none)")
    parser.addini("lab_designs", "contrast designs for the `lab` fixture ('all' or a comma list)", default="")


def pytest_terminal_summary(terminalreporter, config):
    logs = config.stash.get(_LOGS, "")
    if logs:
        terminalreporter.section("lab stack logs (tests failed)")
        terminalreporter.write_line(logs)


class RunningLab:
    """What a test needs of the running stack."""

    def __init__(self, stack: Stack, dc):
        self.stack = stack
        self.settings = stack.settings
        self.dc = dc
        self.nlb_port = stack.nlb_port()

    @property
    def certs_dir(self):
        return self.settings.certs_dir

    def url(self, path: str = "/", design: str = "nlb") -> str:
        """https://localhost:<port><path> for a design's published listener."""
        port = self.nlb_port if design == "nlb" else self.stack.design_port(design)
        return f"https://localhost:{port}{path}"

    def from_ip(self, source_ip: str) -> "_FromIP":
        """Requests from one of the client container's addresses, through the NLB."""
        return _FromIP(Container(containers.ClientContainer(self.dc, self.settings.project)), source_ip)

    @property
    def runtime_api(self) -> RuntimeAPI:
        return self.stack.runtime_api()

    @contextlib.contextmanager
    def reloaded(self, services, *, ready: bool = False, **changes):
        """The running lab with ``services`` reloaded on settings with ``changes`` (yields that
        Stack); the defaults back afterwards, whatever the test did. ``ready``: wait, after each
        reload, until every service serves (lab/readiness.py)."""
        changed = Stack(self.settings.with_(**changes))
        changed.reload(dc=self.dc, services=services)
        try:
            if ready:
                readiness.wait(changed, self.dc, timeout=30)
            yield changed
        finally:
            self.stack.reload(dc=self.dc, services=services)
            if ready:
                readiness.wait(self.stack, self.dc, timeout=30)


class _FromIP:
    def __init__(self, via: Container, source_ip: str):
        self.via, self.source_ip = via, source_ip

    def get(self, client: str | None = "alice", count: int = 1, url: str = "https://www.lab.test/whoami"):
        """``count`` requests, each a new connection; returns lab.answer.Answer objects.

        Raises:
            StackError: when one got no HTTP answer (curl's message included).
        """
        answers = request_many(self.via, client, count=count, source=self.source_ip, **from_url(url))
        return [answer.served() for answer in answers]


DEFAULT_TIMEOUT = 10.0


class _Session(requests.Session):
    """A session whose requests time out unless told otherwise (requests' default is never)."""

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        return super().request(*args, **kwargs)


def session_for(credentials: Credentials) -> requests.Session:
    """A requests session that trusts only the lab CA and presents ``credentials``' certificate;
    every request times out after 10 s unless given its own ``timeout``.

    Raises:
        CertsMissing: when a file is missing (the fix named).
    """
    s = _Session()
    s.trust_env = False  # ignore REQUESTS_CA_BUNDLE and proxies: talk to the lab only
    for name, value in credentials.check().requests_args().items():
        setattr(s, name, value)
    return s


def lab_settings_for(config, base_dir, dc) -> Settings:
    """Isolated settings: unique project, free subnets, ports Docker picks, own folder."""
    raw = config.getoption("--lab-designs")
    raw = raw if raw is not None else config.getini("lab_designs")
    internet, vpc = docker_env.free_subnets(dc, 2)
    any_port = {var: "0" for var in Settings().all_host_ports}
    # LAB_SORRY is the one mode a suite may choose from outside (`LAB_SORRY=lb pytest ...`)
    sorry = {"LAB_SORRY": os.environ["LAB_SORRY"]} if os.environ.get("LAB_SORRY") else {}
    return Settings.from_env(
        env={**any_port, "LAB_DESIGNS": raw or "", **sorry},
        project=f"mtlslab-test-{secrets.token_hex(3)}",
        home=base_dir,
        internet_subnet=internet, vpc_subnet=vpc,
        designs=designs.parse(raw or ""),
    )


@pytest.fixture(scope="session")
def lab_docker():
    """A Docker client that answered a ping (fails with the fix when Docker is down)."""
    return docker_env.client()


@pytest.fixture(scope="session")
def lab(request, tmp_path_factory, lab_docker) -> RunningLab:
    """The running lab: started once per session, removed with `down -v` (LAB_KEEP=1 keeps it)."""
    settings = lab_settings_for(request.config, tmp_path_factory.mktemp("lab"), lab_docker)
    stack = Stack(settings)
    started = False
    try:
        stack.up(UI(verbose=bool(os.environ.get("LAB_VERBOSE"))), keep_on_failure=True)
        started = True
        yield RunningLab(stack, lab_docker)
    finally:
        if request.session.testsfailed or not started:
            try:
                request.config.stash[_LOGS] = stack.compose.logs(tail=40)
            except Exception as exc:  # reporting must not hide the teardown
                request.config.stash[_LOGS] = f"(could not read logs: {exc})"
        if os.environ.get("LAB_KEEP") == "1":
            print(f"\nLAB_KEEP=1: {stack.settings.project} left running; remove it with\n  "
                  + " ".join(stack.compose.argv("down", "-v")))
        else:
            try:
                stack.down()
            except Exception as exc:
                if started:
                    raise
                # the start-up error (already propagating) is the one to see, not this one
                print(f"\nremoving the half-started {stack.settings.project} failed too: {exc}")


@pytest.fixture(scope="session")
def lab_client(lab):
    """lab_client(name) -> a requests session presenting certs/clients/<name> (None: no
    certificate) and trusting only the lab CA (not the machine's CA bundle)."""
    sessions = []

    def make(name: str | None = "alice"):
        session = session_for(Credentials(lab.certs_dir, name))
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()
