"""The load balancers' control plane is the operator's only (the lab's threat model: the
internet network is hostile, the vpc is private, the host's loopback is the operator).

A runtime API reachable from a network could put backends in maintenance, clear stick
tables or, on the verifying load balancers, swap the CA file and CRL (`set ssl ca-file`,
`set ssl crl-file`): a client-certificate bypass. So HAProxy's runtime API and stats page
are UNIX sockets in the host's build folder, and nothing else but the designs' listeners
listens on the networks.
"""

import stat

import pytest

from lab import designs, route53
from lab.containers import compose_container

LOAD_BALANCERS = tuple(designs.LOAD_BALANCERS)
# What the runtime API, the stats page and the local peer listened on before.
CONTROL_PORTS = (9999, 8404, 10000)


def _connects(container, address: str, port: int) -> bool:
    argv = ["timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}"]
    rc, _ = container.exec_run(argv)
    return rc == 0


@pytest.fixture(scope="module")
def outsiders(lab, docker_client):
    """A client on the internet network and a backend on the vpc."""
    project = lab.settings.project
    return {"client": compose_container(docker_client, project, "client"),
            "web1": compose_container(docker_client, project, "web1")}


@pytest.mark.parametrize("lb", LOAD_BALANCERS)
@pytest.mark.parametrize("where", ["client", "web1"])
def test_no_control_port_answers_from_the_networks(lab, outsiders, lb, where):
    container = outsiders[where]
    public, private = lab.settings.lb_ips(lb)
    address = public if where == "client" else private  # each side reaches its own
    listener = designs.LOAD_BALANCERS[lb].designs[0].container_port
    # positive control: the same container does reach the load balancer's listener
    assert _connects(container, address, listener), f"{where} cannot reach {lb} at all: nothing tested"
    open_ports = [port for port in CONTROL_PORTS if _connects(container, address, port)]
    assert open_ports == [], f"{lb} answers {where} on {open_ports}"


@pytest.mark.parametrize("lb", LOAD_BALANCERS)
def test_only_the_listeners_listen_beyond_loopback(lab, docker_client, lb):
    """Every TCP socket a load balancer listens on, read from its kernel: beyond 127.0.0.1,
    only the designs' listener ports."""
    container = compose_container(docker_client, lab.settings.project, lb)
    listening = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        _, out = container.exec_run(["cat", f"/proc/net/{table}"])
        for line in out.decode().splitlines()[1:]:
            fields = line.split()
            # TCP: state 0A is LISTEN; UDP: any bound socket (07) receives datagrams
            if fields[3] == ("0A" if table.startswith("tcp") else "07"):
                address, port = fields[1].split(":")
                if len(address) == 8:
                    address = ".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0))
                listening.add((table, address, int(port, 16)))
    loopback = ("127.", "0000000000000000000000000100000000000000000000000000000000000001")
    public = {(table, port) for table, address, port in listening if not address.startswith(loopback)}
    expected = {d.container_port for d in designs.LOAD_BALANCERS[lb].designs}  # its record's listeners
    if route53.target_health(lab.settings, lb):  # and what the DNS server reads, on the vpc side only
        expected.add(route53.TARGET_HEALTH_PORT)
        assert ("tcp", lab.settings.lb_ips(lb)[1], route53.TARGET_HEALTH_PORT) in listening
    assert public == {("tcp", port) for port in expected}, sorted(listening)
    assert ("tcp", "127.0.0.1", 8404) in listening  # the container's own health check, loopback only


@pytest.mark.parametrize("lb", LOAD_BALANCERS)
def test_the_operator_has_the_runtime_api_on_the_host(lab, lb):
    api = lab.stack.runtime_api(lb)
    mode = api.path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(api.path.parent.stat().st_mode) == 0o700
    assert api.command("show cli level").strip() == "admin"
    record = designs.LOAD_BALANCERS[lb]
    if record.check_backend:
        # the sorry page is a backup server with LAB_SORRY=lb (the lab's shortcut); dns: none
        sorry = {"sorry"} if lab.settings.sorry == "lb" else set()
        assert set(api.server_states(record.check_backend)) == {"web1", "web2"} | sorry
    else:  # no health checks, so no backup server either: a dead origin is an error, as on AWS
        assert set(api.server_states("origin_" + record.designs[0].name.replace("-", "_"))) == {"web1", "web2"}


def test_the_stats_page_is_served_on_the_operators_socket(lab):
    import socket

    path = lab.stack.control_socket("nlb", "stats")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b"GET /stats;csv HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b"web1" in data


def test_lab_api_and_status_keep_working_on_the_sockets(lab_cli):
    import json

    def stdout(*args):
        proc = lab_cli(*args, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert stdout("api", "show", "cli", "level").strip() == "admin"
    assert stdout("api", "show", "table", "web").startswith("# table: web")
    # --lb reaches another load balancer: nlb-tls has no stick table (AWS has no stickiness on
    # TLS listeners), and its servers are there
    assert "# table:" not in stdout("api", "--lb", "nlb-tls", "show", "table")
    assert "web,web1," in stdout("api", "--lb", "nlb-tls", "show", "stat")
    status = json.loads(stdout("status", "--json"))
    assert set(status["stick_tables"]) == {"nlb"}


@pytest.mark.parametrize("lb", LOAD_BALANCERS)
def test_the_stick_reset_socket_is_the_workers_own(lab, docker_client, lb):
    """LAB_NLB_STICKINESS=aws: the runtime API socket the NLB's Lua handler clears its stick table
    through is inside the chroot, for the workers' user only (level operator, haproxy/nlb.cfg.j2);
    no other load balancer has one."""
    container = compose_container(docker_client, lab.settings.project, lb)
    rc, out = container.exec_run(["stat", "-c", "%a %U %F", "/var/lib/haproxy/stick-reset.sock"])
    if lb == "nlb":
        assert (rc, out.decode().strip()) == (0, "600 haproxy socket")
    else:
        assert rc != 0 and b"No such file" in out
