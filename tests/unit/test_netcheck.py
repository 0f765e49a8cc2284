"""A lab subnet must not capture an address this machine needs."""

import ipaddress

from lab import netcheck

NET = ipaddress.IPv4Network


def test_routes_are_parsed_from_proc(tmp_path):
    route = tmp_path / "route"
    route.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "br-1\t007100CB\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    rows = netcheck._routes(route)
    assert rows == [("eth0", NET("0.0.0.0/0"), "192.0.2.1"), ("eth0", NET("192.0.2.0/24"), "0.0.0.0"),
                    ("br-1", NET("203.0.113.0/24"), "0.0.0.0")]


def test_conflicts_name_what_would_be_cut_off():
    needed = {"203.0.113.80": "deb.debian.org", "192.0.2.1": "the gateway on eth0"}
    networks = {NET("192.0.2.0/24"): "eth0"}
    assert netcheck.conflicts(NET("203.0.113.0/24"), needed, networks) == ["it holds 203.0.113.80 (deb.debian.org)"]
    assert len(netcheck.conflicts(NET("192.0.2.0/24"), needed, networks)) == 2
    assert netcheck.conflicts(NET("198.51.100.0/24"), needed, networks) == []
