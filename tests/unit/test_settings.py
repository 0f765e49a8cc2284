"""Settings: defaults, overrides, and a one-line message naming the fix for each bad value."""

import ipaddress

import pytest

from lab import resources
from lab.errors import SettingsError
from lab.settings import Settings


def test_defaults_use_documentation_ranges():
    s = Settings.from_env(env={})
    assert s.project == "mtls-lab" and s.port("LAB_NLB_PORT") == 8443 and s.bind == "127.0.0.1"
    assert s.internet_subnet == ipaddress.IPv4Network("203.0.113.0/24")
    assert s.vpc_subnet == ipaddress.IPv4Network("198.51.100.0/24")


def test_address_plan():
    s = Settings.from_env(env={"LAB_INTERNET_SUBNET": "198.18.7.0/24", "LAB_VPC_SUBNET": "198.18.8.0/24",
                               "LAB_CLIENT_IPS": "8"})
    assert (s.nlb_public_ip, s.nlb_vpc_ip) == ("198.18.7.10", "198.18.8.10")
    assert (s.backend_ip("web1"), s.backend_ip("web2"), s.sorry_ip) == ("198.18.8.11", "198.18.8.12", "198.18.8.13")
    assert s.client_ip == "198.18.7.20"
    assert s.client_extra_ips == [f"198.18.7.{100 + i}" for i in range(8)]
    pool = s.client_pool  # roles, not indexes: six users, a probe and a demo address, all distinct
    assert pool.nat == s.client_ip and len(pool.users) == 6
    assert len({pool.probe, pool.demo, *pool.users}) == 8
    assert s.internet_gateway == "198.18.7.1"


def test_port_zero_means_any_free_port():
    assert Settings.from_env(env={"LAB_NLB_PORT": "0"}).port("LAB_NLB_PORT") == 0


BAD = [
    pytest.param({"LAB_NLB_PORT": "http"}, r"LAB_NLB_PORT='http' is not a port number: use 1-65535", id="port-word"),
    pytest.param({"LAB_NLB_PORT": "70000"}, r"LAB_NLB_PORT=70000 is out of range", id="port-range"),
    pytest.param({"LAB_WEB1_PORT": "8443"}, r"must all differ", id="port-clash"),
    pytest.param({"LAB_DESIGNS": "alb,elb"}, r"unknown design 'elb'", id="design"),
    pytest.param({"LAB_BACKEND_WAF": "maybe"}, r"LAB_BACKEND_WAF='maybe': use on or off", id="waf-flag"),
    pytest.param({"LAB_INTERNET_SUBNET": "10.0.0.0/33"}, r"LAB_INTERNET_SUBNET='10.0.0.0/33' is not an IPv4 subnet", id="subnet-bad"),
    pytest.param({"LAB_INTERNET_SUBNET": "203.0.113.0/28"}, r"too small: the lab needs a /24", id="subnet-small"),
    pytest.param({"LAB_VPC_SUBNET": "203.0.113.0/24"}, r"overlaps LAB_VPC_SUBNET", id="subnet-overlap"),
    pytest.param({"LAB_VPC_SUBNET": "127.0.0.0/8"}, r"reserved range", id="subnet-loopback"),
    pytest.param({"LAB_STICK_EXPIRE": "30 minutes"}, r"not a HAProxy time: use a number and a unit, e\.g\. 30m", id="expiry"),
    pytest.param({"LAB_STICK_EXPIRE": "0s"}, r"not a HAProxy time", id="expiry-zero"),
    pytest.param({"LAB_STICK_EXPIRE": "30d"}, r"LAB_STICK_EXPIRE=30d is too long: HAProxy's maximum is 24d .*e\.g\. 30m",
                 id="expiry-overflow"),
    pytest.param({"LAB_STICK_EXPIRE": "2147483648ms"}, r"HAProxy's maximum is 24d", id="expiry-overflow-ms"),
    pytest.param({"LAB_STICK_EXPIRE": "597h"}, r"HAProxy's maximum is 24d", id="expiry-overflow-h"),
    pytest.param({"LAB_STICK_EXPIRE": "30m\n"}, r"not a HAProxy time", id="expiry-newline"),
    pytest.param({"LAB_CHECK_INTER": "25d"}, r"LAB_CHECK_INTER=25d is too long: HAProxy's maximum is 24d", id="inter-overflow"),
    pytest.param({"LAB_CHECK_INTER": "1us"}, r"LAB_CHECK_INTER='1us' is not a HAProxy time", id="inter-us"),
    pytest.param({"LAB_HOME": "/srv/a:b"}, r"LAB_HOME='/srv/a:b' contains ':'.*choose a folder without it, e\.g\. LAB_HOME=",
                 id="home-colon"),
    pytest.param({"LAB_HOME": "/srv/it's"}, r"LAB_HOME=.* contains \"'\".*choose a folder without it", id="home-quote"),
    pytest.param({"LAB_HOME": '/srv/"lab"'}, r"LAB_HOME=.* contains '\"'", id="home-dquote"),
    pytest.param({"LAB_HOME": "/srv/$lab"}, r"LAB_HOME='/srv/\$lab' contains '\$'", id="home-dollar"),
    pytest.param({"LAB_HOME": "/srv/a\nb"}, r"LAB_HOME='/srv/a\\nb' contains '\\n'", id="home-newline"),
    pytest.param({"LAB_CERTS_DIR": "/srv/certs:ro"}, r"LAB_CERTS_DIR='/srv/certs:ro' contains ':'.*e\.g\. LAB_CERTS_DIR=",
                 id="certs-colon"),
    pytest.param({"LAB_CLIENT_IPS": "500"}, r"LAB_CLIENT_IPS=500 is out of range: use 8-64", id="count"),
    pytest.param({"LAB_CLIENT_IPS": "3"}, r"LAB_CLIENT_IPS=3 is out of range: use 8-64", id="too-few"),
    pytest.param({"LAB_PROJECT": "My Lab"}, r"LAB_PROJECT='My Lab': use lowercase", id="project"),
    pytest.param({"LAB_BIND": "localhost"}, r"LAB_BIND='localhost': use 127\.0\.0\.1 .* or 0\.0\.0\.0", id="bind"),
    pytest.param({"LAB_BIND": "::1"}, r"LAB_BIND='::1': use 127\.0\.0\.1", id="bind-ipv6"),
    pytest.param({"LAB_KEY_TYPE": "dsa"}, r"LAB_KEY_TYPE='dsa': use one of ec, rsa", id="key-type"),
    pytest.param({"LAB_NLB_STICKINESS": "sticky"}, r"LAB_NLB_STICKINESS='sticky': use aws \(reset the pins .*\) "
                 r"or haproxy \(keep them\)", id="stickiness"),
    pytest.param({"LAB_NLB_STICKINESS": ""}, r"LAB_NLB_STICKINESS='': use aws", id="stickiness-empty"),
    pytest.param({"LAB_DASHBOARD_PORT": "web"}, r"LAB_DASHBOARD_PORT='web' is not a port number", id="dashboard-port"),
    pytest.param({"LAB_DASHBOARD_PORT": "70000"}, r"LAB_DASHBOARD_PORT=70000 is out of range", id="dashboard-port-range"),
]


@pytest.mark.parametrize("env, message", BAD)
def test_bad_settings_name_the_fix(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env=env)


def test_good_bind_addresses_pass():
    assert Settings.from_env(env={"LAB_BIND": "0.0.0.0"}).bind == "0.0.0.0"
    assert Settings.from_env(env={}).bind == "127.0.0.1"


def test_designs_and_profiles():
    s = Settings.from_env(env={"LAB_DESIGNS": "nlb-tls-mtls, alb-mtls-verify"})
    assert s.designs == ("alb-mtls-verify", "nlb-tls-mtls")
    assert s.profiles == ("alb-mtls-verify", "nlb-tls-mtls")  # a service carries its designs' profiles
    # one alb service publishes all three ALB listeners, whichever design asked for it
    assert {"LAB_ALB_PORT", "LAB_ALB_VERIFY_PORT", "LAB_ALB_PASSTHROUGH_PORT", "LAB_NLB_TLS_PORT"} <= set(s.host_ports)
    nlb_only = Settings.from_env(env={}).host_ports
    assert "LAB_NLB_PORT" in nlb_only and not {"LAB_ALB_PORT", "LAB_NLB_TLS_PORT"} & set(nlb_only)
    assert Settings.from_env(env={"LAB_DESIGNS": "all"}).designs == (
        "alb", "alb-mtls-verify", "alb-mtls-passthrough", "alb-before", "nlb-tls-mtls", "cloudfront-mtls",
        "cloudfront-mtls-optional")
    assert Settings.from_env(env={}).profiles == ()


def test_longest_times_haproxy_accepts_pass():
    for raw in ("24d", "596h", "2147483647ms", "1ms"):
        s = Settings.from_env(env={"LAB_STICK_EXPIRE": raw, "LAB_CHECK_INTER": raw})
        assert (s.stick_expire, s.check_inter) == (raw, raw)


def test_bad_setting_messages_are_one_line():
    for env in ({"LAB_HOME": "/srv/a\nb"}, {"LAB_STICK_EXPIRE": "30d"}):
        with pytest.raises(SettingsError) as exc:
            Settings.from_env(env=env)
        assert "\n" not in str(exc.value)


def test_good_paths_pass(tmp_path):
    s = Settings.from_env(env={"LAB_HOME": str(tmp_path / "my lab"), "LAB_CERTS_DIR": str(tmp_path / "pki")})
    assert s.home == tmp_path / "my lab" and s.certs_dir == tmp_path / "pki"
    assert Settings.from_env(env={"LAB_HOME": str(tmp_path)}).certs_dir == tmp_path / "certs"


def test_workdir_with_a_colon_is_refused(tmp_path):
    # --workdir arrives as home=
    with pytest.raises(SettingsError, match=r"LAB_HOME=.*a:b' contains ':'"):
        Settings.from_env(env={}, home=(tmp_path / "a:b").resolve())
    with pytest.raises(SettingsError, match=r"contains ':'"):
        Settings.from_env(env={}).with_(home=tmp_path / "a:b")


def test_relative_and_symlinked_paths_are_checked_resolved(tmp_path, monkeypatch):
    (tmp_path / "x:y").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "x:y")
    with pytest.raises(SettingsError, match=r"LAB_HOME=.*x:y' contains ':'"):
        Settings.from_env(env={"LAB_HOME": str(tmp_path / "link")})
    monkeypatch.chdir(tmp_path / "x:y")
    with pytest.raises(SettingsError, match=r"LAB_CERTS_DIR=.*x:y/certs' contains ':'"):
        Settings.from_env(env={"LAB_HOME": str(tmp_path), "LAB_CERTS_DIR": "certs"})


def test_checkout_under_a_colon_path_is_refused(tmp_path, monkeypatch):
    checkout = tmp_path / "work:2024" / "mtls-lab"
    (checkout / "compose").mkdir(parents=True)
    (checkout / "compose" / "compose.yaml.j2").write_text("services: {}\n")
    (checkout / "pyproject.toml").write_text("")
    monkeypatch.setattr(resources, "CHECKOUT", checkout)
    assert resources.default_home() == checkout
    with pytest.raises(SettingsError, match=r"LAB_HOME=.*work:2024/mtls-lab' contains ':'.*LAB_HOME=~/mtls-lab"):
        Settings.from_env(env={})
    with pytest.raises(SettingsError, match=r"contains ':'"):
        Settings()
    assert Settings.from_env(env={"LAB_HOME": str(tmp_path / "elsewhere")}).home == tmp_path / "elsewhere"


def test_nlb_stickiness_is_aws_unless_haproxy_is_asked_for():
    assert Settings.from_env(env={}).nlb_stickiness == "aws"
    assert Settings.from_env(env={"LAB_NLB_STICKINESS": "haproxy"}).nlb_stickiness == "haproxy"
    assert Settings.from_env(env={"LAB_NLB_STICKINESS": " AWS "}).nlb_stickiness == "aws"


def test_dashboard_port_is_8480_unless_set():
    assert Settings.from_env(env={}).dashboard_port == 8480
    assert Settings.from_env(env={"LAB_DASHBOARD_PORT": "0"}).dashboard_port == 0
