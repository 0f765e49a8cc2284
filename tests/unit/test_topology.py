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
    assert set(only_nlb.host_ports) == {"LAB_NLB_PORT", "LAB_WEB1_PORT", "LAB_WEB2_PORT", "LAB_DNS_PORT", "LAB_CDN_PORT"}


def test_a_build_folder_from_an_older_lab_gets_its_compose_file(tmp_path):
    """Before 0.3.0 the lab kept only compose.env beside the configs: `lab status`, `logs` and
    `reload` then found no compose file. The stack writes it from the records."""
    from lab.stack import Stack

    s = Settings.from_env(env={"LAB_HOME": str(tmp_path), "LAB_DESIGNS": "alb"})
    s.build_dir.mkdir(parents=True)
    (s.build_dir / "compose.env").write_text("COMPOSE_PROJECT_NAME='mtls-lab'\nLAB_CONFIG_HASH='abc'\n"
                                              "LAB_DESIGNS='alb'\n")
    stack = Stack(s)
    topology = yaml.safe_load(stack.compose.compose_file.read_text())
    assert {"nlb", "alb", "alb-waf"} <= set(topology["services"])
    assert topology["services"]["nlb"]["labels"]["org.mtls-lab.config-hash"] == "abc"


def test_designs_name_load_balancers_and_all():
    from lab.errors import SettingsError
    import pytest

    assert designs.parse("all,alb") == designs.OPTIONAL
    with pytest.raises(SettingsError, match="'cloudfront' is a load balancer: choose its designs, cloudfront-mtls"):
        designs.parse("cloudfront")


def test_one_design_object_per_design():
    for lb in designs.LOAD_BALANCERS.values():
        for d in lb.designs:
            assert d.service == lb.service and designs.DESIGNS[d.name] is d


def test_every_identity_header_is_dropped_where_its_load_balancer_takes_requests(tmp_path):
    """A client's copy of an identity header must never reach a backend that believes it from
    the load balancer: each header of a design's target is deleted by that design's frontend."""
    s = Settings.from_env(env={"LAB_HOME": str(tmp_path)})
    for d in designs.DESIGNS.values():
        if not d.target.headers:
            continue
        cfg = render.haproxy_cfg(s, d.service, generation="g", owner=(0, 0))
        frontend = cfg.split(f"frontend {d.name.replace('-', '_')}\n")[1].split("\nbackend ")[0]
        deleted = [line.split("del-header ", 1)[1] for line in frontend.splitlines() if "del-header " in line]
        for header in filter(None, vars(d.target.headers).values()):
            assert any(header.lower() == x.split()[0].lower() or
                       (x.endswith("-m beg") and header.lower().startswith(x.split()[0].lower())) for x in deleted), \
                (d.name, header, deleted)
