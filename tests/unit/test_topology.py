"""The topology records: everything that derives from them stays consistent."""

import yaml

from lab import designs, render
from lab.settings import Settings


def test_addresses_ports_and_listeners_never_collide():
    s = Settings.from_env(env={})
    internet = [s.lb_ips(lb)[0] for lb in designs.LOAD_BALANCERS] + [s.client_ip, s.internet_gateway]
    vpc = ([s.lb_ips(lb)[1] for lb in designs.LOAD_BALANCERS] + [s.backend_ip(b) for b in designs.BACKENDS]
           + [s.sorry_ip, s.verifier_ip])
    assert len(set(internet)) == len(internet) and len(set(vpc)) == len(vpc)
    assert not set(s.client_extra_ips) & set(internet)
    assert len(set(designs.PORT_SETTINGS.values())) == len(designs.PORT_SETTINGS)
    ports = [l.port for l in designs.BACKEND_LISTENERS.values()] + [designs.RENDER_PORT]
    assert len(set(ports)) == len(ports)


def test_the_compose_file_carries_every_record(tmp_path):
    s = Settings.from_env(env={"LAB_HOME": str(tmp_path), "LAB_NLB_PORT": "0"})
    topology = yaml.safe_load(render.compose_yaml(s, {}, "h"))
    services = topology["services"]
    assert set(services) == set(designs.SERVICES)
    for lb in designs.LOAD_BALANCERS.values():
        block = services[lb.service]
        internet_ip, vpc_ip = s.lb_ips(lb.service)
        assert block["networks"]["internet"]["ipv4_address"] == internet_ip
        assert block["networks"]["vpc"]["ipv4_address"] == vpc_ip
        published = [p.rsplit(":", 1)[1] for p in block["ports"]]
        assert published == [str(d.container_port) for d in lb.designs]
        # an always-on load balancer has no profile; the others run with any of their designs
        assert block.get("profiles", []) == ([] if lb.always_on else [d.name for d in lb.designs])
        for companion in lb.companions:
            assert set(d.name for d in lb.designs) <= set(services[companion]["profiles"])
    assert services["nlb"]["ports"] == ["127.0.0.1::443"]  # 0: Docker picks
    assert "${" not in render.compose_yaml(s, {}, "h")  # every value comes from the records and settings


def test_profiles_are_the_chosen_designs():
    s = Settings.from_env(env={"LAB_DESIGNS": "all"})
    assert s.profiles == tuple(sorted(designs.OPTIONAL))
    assert set(s.host_ports) == set(designs.PORT_SETTINGS)
    only_nlb = Settings.from_env(env={})
    assert set(only_nlb.host_ports) == {"LAB_NLB_PORT", "LAB_WEB1_PORT", "LAB_WEB2_PORT"}
