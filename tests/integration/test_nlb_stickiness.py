"""Seed claims C2 and C3: stickiness keys on the client's source IP, and the backends see
that IP (PROXY protocol v2) rather than the load balancer's.

Clients speak from the client container on the "internet" network, which holds several
source addresses; each request is a new TCP connection (Connection: close).
"""

import collections

from lab import probe


def test_same_source_ip_lands_on_the_same_backend_20_of_20(lab, client_box, runtime_api):
    source = lab.settings.client_extra_ips[0]
    replies = client_box.get("alice", source, count=20)
    backends = collections.Counter(r.backend for r in replies)
    assert all(r.status == 200 for r in replies)
    assert len(backends) == 1 and sum(backends.values()) == 20, backends
    assert runtime_api.stick_table()[source] == replies[0].backend


def test_distinct_source_ips_spread_over_both_backends(lab, client_box, runtime_api):
    """The negative control for the test above: stickiness is per IP, not 'everyone to web1'.

    Ten addresses, not two: right after servers change state (an earlier test stopped them)
    HAProxy's round-robin can send several new clients in a row to the same one."""
    runtime_api.wait_up()
    seen = {}
    for source in lab.settings.client_extra_ips[1:11]:
        first, second = client_box.get("bob", source, count=2)
        assert first.backend == second.backend, source
        seen[source] = first.backend
    assert set(seen.values()) == {"web1", "web2"}, seen
    table = runtime_api.stick_table()
    assert {ip: table[ip] for ip in seen} == seen


def test_thirty_clients_behind_one_nat_address_all_land_on_one_backend(lab, client_box, runtime_api):
    """The imbalance the seed warns about: one shared IP, one backend, however many users."""
    assert runtime_api.server_states() == {"web1": "UP", "web2": "UP", "sorry": "UP"}
    nat = lab.settings.client_ip  # the client container's primary address, used by nobody else
    replies = client_box.get("alice", nat, count=15) + client_box.get("bob", nat, count=15)
    assert all(r.status == 200 for r in replies)
    counts = collections.Counter(r.backend for r in replies)
    assert len(counts) == 1 and sum(counts.values()) == 30, counts
    subjects = {r.body["client_subject"].split(",")[0] for r in replies}
    assert subjects == {"CN=alice", "CN=bob"}  # two different users, one server


def test_backend_sees_the_clients_own_address(lab, client_box):
    s = lab.settings
    for source in (s.client_extra_ips[-1], s.client_extra_ips[-2]):
        (reply,) = client_box.get("alice", source)
        assert reply.body["client_ip"] == source
        assert reply.body["peer_ip"] == s.nlb_vpc_ip  # the TCP peer is the load balancer
        assert reply.body["client_ip"] != reply.body["peer_ip"]


def test_host_client_is_seen_with_its_internet_side_address(lab, certs_dir, nlb_port):
    """From the host, Docker's port publishing makes the bridge gateway the source: that, not the LB."""
    reply = probe.get(certs_dir, nlb_port, client="alice")
    assert reply.body["client_ip"] == lab.settings.internet_gateway
    assert reply.body["peer_ip"] == lab.settings.nlb_vpc_ip


def test_host_client_sticks_too(certs_dir, nlb_port):
    backends = {probe.get(certs_dir, nlb_port, client="alice").backend for _ in range(20)}
    assert len(backends) == 1, backends
