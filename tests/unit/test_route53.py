"""The DNS layer as rendered: the failover pair, the target health it reads, the modes of the
sorry page, and the settings that shape them (the running behaviour:
tests/integration/test_dns_failover.py)."""

import pytest
import yaml

from lab import render, route53
from lab.errors import SettingsError
from lab.settings import Settings


def settings(tmp_path, **env):
    return Settings.from_env(env={"LAB_HOME": str(tmp_path), **env})


def rendered(tmp_path, **env):
    s = settings(tmp_path, **env)
    r = render.render(s, {})
    return s, r, {name: (s.build_dir / "dns" / name).read_text() for name in route53.TEMPLATES}


def test_www_is_a_failover_pair_primary_the_nlb_by_its_target_health_secondary_the_cdn(tmp_path):
    s, _, files = rendered(tmp_path)
    zone = files["lab.test.zone"]
    nlb_public, nlb_vpc = s.lb_ips("nlb")
    cdn = route53.cdn_ip(s)
    # one LUA record: the first group whose check answers 200 (ifurlextup), primary first; the
    # secondary has no health check (always healthy: the DNS server's own webserver answers)
    assert (f"www 5 IN LUA A \"ifurlextup({{{{['{nlb_public}']='http://{nlb_vpc}:8405/target-health'}}, "
            f"{{['{cdn}']='http://127.0.0.1:8081/'}}}}, {{timeout=1}})\"") in zone
    assert "$TTL 5" in zone
    assert "www.lab.test" not in zone.split("alb ")[1]  # the other names are plain records
    assert f"alb         IN A   {s.lb_ips('alb')[0]}" in zone


def test_the_nlb_reports_target_health_on_its_vpc_address_only(tmp_path):
    s = settings(tmp_path)
    cfg = render.haproxy_cfg(s, "nlb")
    health = cfg.split("frontend target_health")[1].split("frontend stats")[0]
    assert f"bind {s.nlb_vpc_ip}:8405" in health and "bind :" not in health
    assert "monitor-uri /target-health" in health and "monitor fail if { nbsrv(web) lt 1 }" in health
    # so does the ALB (the primary before the cutover drill), on its vpc address, for its
    # first target group's checks; the others are never an alias target
    alb = render.haproxy_cfg(s, "alb").split("frontend target_health")[1].split("frontend stats")[0]
    assert f"bind {s.lb_ips('alb')[1]}:8405" in alb and "monitor fail if { nbsrv(targets_alb) lt 1 }" in alb
    for lb in ("nlb-tls", "cloudfront"):
        assert "frontend target_health" not in render.haproxy_cfg(s, lb)


def test_sorry_dns_fails_open_and_sorry_lb_keeps_the_backup_server(tmp_path):
    dns_mode = render.haproxy_cfg(settings(tmp_path), "nlb")  # the default
    assert "use_backend web_fail_open if { nbsrv(web) lt 1 }" in dns_mode
    fail_open = dns_mode.split("\nbackend web_fail_open")[1].split("frontend")[0]
    assert "server web1" in fail_open and "server web2" in fail_open and " check" not in fail_open
    assert "server sorry" not in dns_mode
    lb_mode = render.haproxy_cfg(settings(tmp_path, LAB_SORRY="lb"), "nlb")
    assert "web_fail_open" not in lb_mode and "server sorry" in lb_mode
    # the TLS listener's fail-open copy re-encrypts as its checked servers do
    tls = render.haproxy_cfg(settings(tmp_path), "nlb-tls").split("\nbackend web_fail_open")[1]
    assert "send-proxy-v2 ssl sni str(www.lab.test) verify required" in tls
    # and names the client in PROXY v2 only with the lab's option, as they do
    tls_cn = render.haproxy_cfg(settings(tmp_path, LAB_NLB_TLS_PROXY_IDENTITY="cn"), "nlb-tls")
    assert "send-proxy-v2 send-proxy-v2-ssl-cn ssl sni" in tls_cn.split("\nbackend web_fail_open")[1]


def test_pdns_config_polls_nobody_caches_nothing_and_checks_at_the_lb_pace(tmp_path):
    _, _, files = rendered(tmp_path, LAB_CHECK_INTER="1500ms")
    conf = files["pdns.conf"]
    assert "security-poll-suffix=\n" in conf  # no query leaves the lab
    assert "cache-ttl=0" in conf and "query-cache-ttl=0" in conf
    assert "lua-health-checks-interval=2" in conf  # 1.5 s, rounded up to whole seconds
    assert "enable-lua-records=yes" in conf and "launch=lmdb" in conf
    # the HTTP API on the container's loopback only, its key made at the start, not rendered
    assert "webserver-address=127.0.0.1\n" in conf and "webserver-allow-from=127.0.0.1/32\n" in conf
    assert "api=yes" in conf and "api-key" not in conf and "include-dir=/run/lab-dns" in conf


def test_compose_runs_dns_and_cdn_and_the_client_resolves_through_it(tmp_path):
    s, r, _ = rendered(tmp_path)
    services = yaml.safe_load(r.compose_text)["services"]
    dns_public, dns_vpc = route53.dns_ips(s)
    assert services["client"]["dns"] == [dns_public]
    assert services["dns"]["ports"] == ["127.0.0.1:8553:53/udp", "127.0.0.1:8553:53/tcp"]
    assert set(services["dns"]["networks"]) == {"internet", "vpc"}
    assert services["cdn"]["ports"] == ["127.0.0.1:8456:443"] and set(services["cdn"]["networks"]) == {"internet"}
    assert any(v.endswith("/cdn:/etc/lab/server:ro") for v in services["cdn"]["volumes"])
    # Docker's resolver must not answer www.lab.test itself: the lab's DNS server does
    assert "aliases" not in services["nlb"]["networks"]["internet"]
    assert services["alb"]["networks"]["internet"]["aliases"] == ["alb.lab.test"]
    cdn_conf = (s.build_dir / "nginx" / "cdn" / "nginx.conf").read_text()
    assert "listen 443 ssl;" in cdn_conf and "ssl_verify_client" not in cdn_conf and "proxy_protocol" not in cdn_conf


@pytest.mark.parametrize("raw, expected", [("5", 5), ("60s", 60), (" 1 ", 1), ("86400", 86400)])
def test_dns_ttl_takes_whole_seconds(raw, expected):
    assert Settings.from_env(env={"LAB_DNS_TTL": raw}).dns_ttl == expected


@pytest.mark.parametrize("raw", ["0", "-5", "1.5", "5m", "", "86401", "sixty"])
def test_a_bad_dns_ttl_names_the_fix(raw):
    with pytest.raises(SettingsError, match=r"LAB_DNS_TTL=.*whole seconds from 1 to 86400, e\.g\. 5 .*60"):
        Settings.from_env(env={"LAB_DNS_TTL": raw})


def test_a_bad_sorry_mode_names_the_choices():
    assert Settings.from_env(env={}).sorry == "dns"
    assert Settings.from_env(env={"LAB_SORRY": "LB"}).sorry == "lb"
    with pytest.raises(SettingsError, match=r"LAB_SORRY='cdn': use dns .* or lb"):
        Settings.from_env(env={"LAB_SORRY": "cdn"})


def test_the_dns_and_cdn_ports_are_settings_like_the_others():
    s = Settings.from_env(env={"LAB_DNS_PORT": "9553", "LAB_CDN_PORT": "0"})
    assert s.port("LAB_DNS_PORT") == 9553 and s.port("LAB_CDN_PORT") == 0
    with pytest.raises(SettingsError, match="must all differ"):
        Settings.from_env(env={"LAB_DNS_PORT": "8443"})  # the NLB's


def test_compare_says_where_the_sorry_page_comes_from_per_mode():
    dns_mode, lb_mode = Settings.from_env(env={}), Settings.from_env(env={"LAB_SORRY": "lb"})
    assert route53.sorry_source(dns_mode, "nlb").startswith("DNS failover: www.lab.test -> the cdn")
    assert route53.sorry_source(dns_mode, "nlb-tls").startswith("none: it fails open")
    assert route53.sorry_source(lb_mode, "nlb").startswith("in the LB")
    assert route53.sorry_source(dns_mode, "alb").startswith("none: it fails open")  # as an AWS ALB does
    assert route53.sorry_source(lb_mode, "alb").startswith("in the LB")
    assert route53.sorry_source(dns_mode, "cloudfront").startswith("none: no health checks")
