"""Seed claims C2 and C3: stickiness keys on the client's source IP, and the backends see
that IP (PROXY protocol v2) rather than the load balancer's.

Clients speak from the client container on the "internet" network, which holds several
source addresses; each request is a new TCP connection (Connection: close).
"""

import collections

from lab.client import request, request_many


def test_same_source_ip_lands_on_the_same_backend_20_of_20(lab, from_client, runtime_api):
    source = lab.settings.client_extra_ips[0]
    replies = request_many(from_client, "alice", count=20, source=source)
    backends = collections.Counter(r.backend for r in replies)
    assert all(r.status == 200 for r in replies)
    assert len(backends) == 1 and sum(backends.values()) == 20, backends
    assert runtime_api.stick_table()[source] == replies[0].backend


def test_distinct_source_ips_spread_over_both_backends(lab, from_client, runtime_api):
    """The negative control for the test above: stickiness is per IP, not 'everyone to web1'.

    Ten addresses, not two: right after servers change state (an earlier test stopped them)
    HAProxy's round-robin can send several new clients in a row to the same one."""
    runtime_api.wait_up()
    seen = {}
    for source in lab.settings.client_extra_ips[1:11]:
        first, second = request_many(from_client, "bob", count=2, source=source)
        assert first.backend == second.backend, source
        seen[source] = first.backend
    assert set(seen.values()) == {"web1", "web2"}, seen
    table = runtime_api.stick_table()
    assert {ip: table[ip] for ip in seen} == seen


def test_thirty_clients_behind_one_nat_address_all_land_on_one_backend(lab, from_client, runtime_api):
    """The imbalance the seed warns about: one shared IP, one backend, however many users."""
    sorry = {"sorry": "UP"} if lab.settings.sorry == "lb" else {}  # LAB_SORRY=dns: no backup server
    assert runtime_api.server_states() == {"web1": "UP", "web2": "UP", **sorry}
    nat = lab.settings.client_ip  # the client container's primary address, used by nobody else
    replies = (request_many(from_client, "alice", count=15, source=nat)
               + request_many(from_client, "bob", count=15, source=nat))
    assert all(r.status == 200 for r in replies)
    counts = collections.Counter(r.backend for r in replies)
    assert len(counts) == 1 and sum(counts.values()) == 30, counts
    subjects = {r.body["client_subject"].split(",")[0] for r in replies}
    assert subjects == {"CN=alice", "CN=bob"}  # two different users, one server


def test_backend_sees_the_clients_own_address(lab, from_client):
    s = lab.settings
    for source in (s.client_extra_ips[-1], s.client_extra_ips[-2]):
        reply = request(from_client, "alice", source=source)
        assert reply.body["client_ip"] == source
        assert reply.body["peer_ip"] == s.nlb_vpc_ip  # the TCP peer is the load balancer
        assert reply.body["client_ip"] != reply.body["peer_ip"]


def test_host_client_is_seen_with_its_internet_side_address(lab, from_host, nlb_port):
    """From the host, Docker's port publishing makes the bridge gateway the source: that, not the LB."""
    reply = request(from_host, "alice", port=nlb_port)
    assert reply.body["client_ip"] == lab.settings.internet_gateway
    assert reply.body["peer_ip"] == lab.settings.nlb_vpc_ip


def test_host_client_sticks_too(from_host, nlb_port):
    backends = {request(from_host, "alice", port=nlb_port).backend for _ in range(20)}
    assert len(backends) == 1, backends
