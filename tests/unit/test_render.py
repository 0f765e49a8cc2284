"""Rendering: the configs carry the design's decisions (syntax is checked in the images,
tests/integration/test_config_check.py)."""

import re

from lab import render, stick_reset
from lab.settings import Settings


def settings(tmp_path, **env):
    return Settings.from_env(env={"LAB_HOME": str(tmp_path), **env})


def test_haproxy_is_a_tcp_passthrough_with_source_ip_stickiness(tmp_path):
    cfg = render.haproxy_cfg(settings(tmp_path, LAB_STICK_EXPIRE="45m"), "nlb")
    assert "mode tcp" in cfg and "mode http" in cfg.split("frontend stats")[1]
    assert "stick-table type ip size 1m expire 45m peers lab" in cfg
    assert "stick on src" in cfg
    assert "send-proxy-v2" in cfg
    assert "server web1 198.51.100.11:443" in cfg and "server web2 198.51.100.12:443" in cfg
    # LAB_SORRY=dns (the default): no sorry page in the load balancer (tests/unit/test_route53.py)
    assert "server sorry" not in cfg
    lb_mode = render.haproxy_cfg(settings(tmp_path, LAB_SORRY="lb"), "nlb")
    assert "server sorry 198.51.100.13:443 backup non-stick" in lb_mode
    # the passthrough frontend never terminates TLS
    assert " ssl " not in cfg.split("frontend nlb")[1].split("backend web")[0]
    assert "crt /etc/lab/health/health.pem" in cfg  # checks present the health certificate


def test_nlb_stickiness_aws_resets_the_table_on_target_events_haproxy_keeps_it(tmp_path):
    aws = render.haproxy_cfg(settings(tmp_path), "nlb")  # the default
    # the Lua handler, and the operator-level socket inside the chroot it clears the table through
    assert "lua-load /etc/haproxy/lab/stick-reset.lua" in aws
    assert "stats socket /var/lib/haproxy/stick-reset.sock mode 600 user haproxy group haproxy level operator" in aws
    assert "chroot /var/lib/haproxy" in aws and "stick on src" in aws
    assert "setenv LAB_NLB_STICKINESS aws" in aws  # the demo reads the running mode back
    lua = stick_reset.lua(settings(tmp_path), "nlb", render.environment(), render.BANNER)
    assert 'core.event_sub({"SERVER_STATE", "SERVER_ADMIN", "SERVER_ADD", "SERVER_DEL"}' in lua
    assert 'local TABLE, BACKEND, SOCKET = "web", "web", "/stick-reset.sock"' in lua
    assert '"clear table " .. TABLE' in lua and 'NOT_TARGETS = { ["sorry"] = true, }' in lua
    # haproxy: today's config, pins kept until they expire
    kept = render.haproxy_cfg(settings(tmp_path, LAB_NLB_STICKINESS="haproxy"), "nlb")
    assert "stick on src" in kept and "lua-load" not in kept and "stick-reset.sock" not in kept
    assert "setenv LAB_NLB_STICKINESS haproxy" in kept
    assert stick_reset.options(settings(tmp_path, LAB_NLB_STICKINESS="haproxy"), "nlb") is None
    # only the source-sticky load balancer has one
    assert stick_reset.options(settings(tmp_path), "nlb-tls") is None and stick_reset.options(settings(tmp_path), "alb") is None


def test_the_stick_reset_lua_is_written_beside_the_config_in_place(tmp_path):
    s = settings(tmp_path)
    lua = s.build_dir / "haproxy" / "nlb" / "stick-reset.lua"
    rendered = render.render(s, {}, staged=True)
    # in place even when staged: `haproxy -c` of the staged haproxy.cfg loads it by name
    assert lua.read_text() == stick_reset.lua(s, "nlb", render.environment(), render.BANNER)
    assert not (s.build_dir / "haproxy" / "nlb-tls" / "stick-reset.lua").exists()
    rendered.discard()  # nothing changed: it goes, as it was not there before
    assert not lua.exists()
    first = render.render(s, {})
    assert lua.exists()
    assert render.render(s.with_(nlb_stickiness="haproxy"), {}).config_hash != first.config_hash


def test_nlb_tls_listener_is_round_robin_without_stickiness(tmp_path):
    """AWS: "Sticky sessions are not supported for TLS or QUIC listeners" (docs/aws-parity.md)."""
    cfg = render.haproxy_cfg(settings(tmp_path), "nlb-tls")
    assert "balance roundrobin" in cfg.split("\nbackend web")[1]
    assert "stick-table" not in cfg and "stick on" not in cfg and "lua-load" not in cfg
    assert "server sorry" not in cfg  # LAB_SORRY=dns: it fails open as an NLB does
    lb_mode = render.haproxy_cfg(settings(tmp_path, LAB_SORRY="lb"), "nlb-tls")
    assert "server sorry 198.51.100.13:443 backup inter 10s\n" in lb_mode  # not non-stick: no table


def test_tls_terminating_load_balancers_verify_and_keep_the_client_ip(tmp_path):
    s = settings(tmp_path)
    nlb_tls = render.haproxy_cfg(s, "nlb-tls")
    assert "bind :443 ssl crt /etc/lab/server/server.crt verify required ca-file" in nlb_tls
    assert "crl-file /etc/lab/trust/crl.pem" in nlb_tls and "send-proxy-v2" in nlb_tls
    assert "198.51.100.11:8446" in nlb_tls
    alb = render.haproxy_cfg(s, "alb")
    # client copies of identity headers and X-Forwarded-For are dropped on every listener
    assert alb.count("http-request del-header X-Amzn-Mtls- -m beg") == 4
    assert alb.count("cookie AWSALB insert") == 8  # four target groups, their fail-open copies (dns)
    assert "verify optional" in alb and "ca-ignore-err all" in alb  # passthrough asks, does not check
    # an ALB never presents a client certificate to its targets
    assert "health.pem" not in alb


def test_nginx_backend_demands_client_cert_and_trusts_proxy_only_from_lb(tmp_path):
    conf = render.nginx_conf(settings(tmp_path, LAB_VPC_SUBNET="198.18.9.0/24"), "web2")
    assert "listen 443 ssl proxy_protocol;" in conf
    assert conf.count("ssl_verify_client on;") == 1 and "ssl_crl /etc/lab/trust/crl.pem;" in conf
    assert "listen 8443 ssl;" in conf  # the diagnostic listener, no PROXY protocol
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    # each listener believes exactly one load balancer: NLB, ALB and CloudFront (headers), ALB
    # (chain), ALB (the application before the migration), NLB TLS
    assert re.findall(r"set_real_ip_from (\S+);", conf) == ["198.18.9.10", "198.18.9.21", "198.18.9.25", "198.18.9.21",
                                                            "198.18.9.21", "198.18.9.22"]
    assert '"backend":"web2"' in conf
    # nginx drops server-level add_header in a location that has its own: keep them server-level
    locations = re.findall(r"^\s*location [^{]*\{([^}]*)\}", conf, re.M)
    assert len(locations) >= 10 and not any("add_header" in block for block in locations)
    # identity headers and X-Forwarded-For are believed from the ALB's address only
    assert "geo $realip_remote_addr $from_alb { default 0; 198.18.9.21 1; }" in conf
    assert "modsecurity" not in conf  # no WAF on the backends unless asked
    waf_on = render.nginx_conf(settings(tmp_path, LAB_BACKEND_WAF="on"), "web1")
    assert waf_on.startswith("# Rendered") and "load_module /usr/lib/nginx/modules/ngx_http_modsecurity_module.so;" in waf_on
    assert waf_on.count("modsecurity on;") == 6  # every TLS listener (the diagnostic one shares 443's server)


def test_sorry_page_asks_no_certificate_and_answers_503(tmp_path):
    conf = render.nginx_conf(settings(tmp_path), "sorry")
    assert "ssl_verify_client" not in conf
    assert "return 503" in conf
    assert "listen 8443" not in conf  # no diagnostic listener on the sorry page


def test_unknown_server_name(tmp_path):
    import pytest
    with pytest.raises(ValueError, match="unknown web server 'web3'"):
        render.nginx_conf(settings(tmp_path), "web3")


def test_render_writes_files_and_a_hash_that_follows_content(tmp_path):
    s = settings(tmp_path)
    first = render.render(s, {"nginx": "mtls-lab/nginx:x"})
    assert (s.build_dir / "haproxy" / "nlb" / "haproxy.cfg").exists()
    assert (s.build_dir / "nginx" / "alb-waf" / "modsecurity.conf").exists()
    assert (s.build_dir / "nginx" / "sorry" / "nginx.conf").exists()
    assert "COMPOSE_PROJECT_NAME='mtls-lab'" in first.env_file.read_text()
    topology = first.compose_file.read_text()
    assert 'image: "mtls-lab/nginx:x"' in topology and 'image: "unbuilt/haproxy"' in topology
    assert 'LAB_CLIENT_EXTRA_IPS: "203.0.113.100 203.0.113.101' in topology
    assert render.render(s, {"nginx": "mtls-lab/nginx:x"}).config_hash == first.config_hash
    changed = render.render(s.with_(stick_expire="5m"), {"nginx": "mtls-lab/nginx:x"})
    assert changed.config_hash != first.config_hash


def test_port_zero_renders_empty_so_docker_picks(tmp_path):
    r = render.render(settings(tmp_path, LAB_NLB_PORT="0"), {})
    assert '- "127.0.0.1::443"' in r.compose_text and '- "127.0.0.1:8450:8450"' in r.compose_text


def test_image_tag_ignores_templates_but_follows_the_dockerfile(tmp_path):
    from lab import images

    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    (tmp_path / ".dockerignore").write_text("# mounted at run time\n*.j2\nsorry/\n")
    (tmp_path / "x.conf.j2").write_text("a")
    (tmp_path / "sorry").mkdir()
    (tmp_path / "sorry" / "sorry.html").write_text("b")
    before = images.context_hash(tmp_path, "base1")
    (tmp_path / "x.conf.j2").write_text("changed")
    (tmp_path / "sorry" / "sorry.html").write_text("changed")
    assert images.context_hash(tmp_path, "base1") == before
    assert images.context_hash(tmp_path, "base2") != before
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\nRUN true\n")
    assert images.context_hash(tmp_path, "base1") != before
