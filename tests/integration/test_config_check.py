"""The rendered configs pass the servers' own syntax checks, run inside the lab images:
`haproxy -c` and `nginx -t`. A deliberately broken config fails them (the check can fail)."""

import pytest

from lab import certs, designs, images, render
from lab.settings import Settings
from lab.ui import UI


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, docker_client):
    home = tmp_path_factory.mktemp("render")
    settings = Settings.from_env(env={}, home=home, project="render-check")
    certs.ensure_pki(settings.certs_dir)
    refs = images.ensure_images(docker_client, UI(quiet=True))
    render.render(settings, refs)
    return settings, refs


def run_in(docker_client, image, command, volumes):
    container = docker_client.containers.run(image, command, volumes=volumes, detach=True)
    try:
        result = container.wait(timeout=60)
        return result["StatusCode"], container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def haproxy_check(docker_client, settings, refs, cfg_dir):
    lay = certs.Layout(settings.certs_dir)
    # -V: HAProxy 3.0 says "Configuration file is valid" only in verbose mode (2.6 always did)
    return run_in(docker_client, refs["haproxy"], ["haproxy", "-c", "-V", "-f", "/etc/haproxy/lab/haproxy.cfg"], {
        str(cfg_dir): {"bind": "/etc/haproxy/lab", "mode": "ro"},
        str(settings.build_dir / "trust"): {"bind": "/etc/lab/trust", "mode": "ro"},
        str(lay.health_dir): {"bind": "/etc/lab/health", "mode": "ro"},
        str(lay.server_dir): {"bind": "/etc/lab/server", "mode": "ro"},
    })


def nginx_check(docker_client, settings, refs, cfg_dir):
    lay = certs.Layout(settings.certs_dir)
    return run_in(docker_client, refs["nginx"], ["nginx", "-t", "-c", "/etc/nginx/lab/nginx.conf"], {
        str(cfg_dir): {"bind": "/etc/nginx/lab", "mode": "ro"},
        str(settings.build_dir / "trust"): {"bind": "/etc/lab/trust", "mode": "ro"},
        str(lay.server_dir): {"bind": "/etc/lab/server", "mode": "ro"},
    })


@pytest.mark.parametrize("lb", list(designs.LOAD_BALANCERS))
def test_haproxy_cfg_passes_haproxy_c(docker_client, rendered, lb):
    settings, refs = rendered
    rc, out = haproxy_check(docker_client, settings, refs, settings.build_dir / "haproxy" / lb)
    assert rc == 0, out
    assert "Configuration file is valid" in out


@pytest.mark.parametrize("name", [*designs.BACKENDS, "sorry", *render.waf_services(), "web1-with-waf"])
def test_nginx_conf_passes_nginx_t(docker_client, rendered, name, tmp_path):
    settings, refs = rendered
    folder = settings.build_dir / "nginx" / name
    if name == "web1-with-waf":  # ModSecurity and the core rule set load on a backend too
        folder = tmp_path
        (folder / "nginx.conf").write_text(render.nginx_conf(settings.with_(backend_waf=True), "web1"))
        (folder / "modsecurity.conf").write_text(render.modsecurity_conf())
    rc, out = nginx_check(docker_client, settings, refs, folder)
    assert rc == 0, out
    assert "syntax is ok" in out and "test is successful" in out


def test_broken_configs_fail_the_checks(docker_client, rendered, tmp_path):
    settings, refs = rendered
    bad_haproxy = tmp_path / "haproxy"
    bad_haproxy.mkdir()
    good = (settings.build_dir / "haproxy" / "nlb" / "haproxy.cfg").read_text()
    lua = (settings.build_dir / "haproxy" / "nlb" / "stick-reset.lua").read_text()
    (bad_haproxy / "haproxy.cfg").write_text(good.replace("stick on src", "stick on nonsense_fetch"))
    (bad_haproxy / "stick-reset.lua").write_text(lua)
    rc, out = haproxy_check(docker_client, settings, refs, bad_haproxy)
    assert rc != 0 and "nonsense_fetch" in out
    # the stick-reset Lua is checked too (`lab reload` has it checked before the switch)
    (bad_haproxy / "haproxy.cfg").write_text(good)
    (bad_haproxy / "stick-reset.lua").write_text(lua.replace("local function reset(why)", "local function reset(why"))
    rc, out = haproxy_check(docker_client, settings, refs, bad_haproxy)
    assert rc != 0 and "stick-reset.lua" in out

    bad_nginx = tmp_path / "nginx"
    bad_nginx.mkdir()
    good = (settings.build_dir / "nginx" / "web1" / "nginx.conf").read_text()
    (bad_nginx / "nginx.conf").write_text(good.replace("ssl_verify_client on;", "ssl_verify_client perhaps;"))
    rc, out = nginx_check(docker_client, settings, refs, bad_nginx)
    assert rc != 0 and 'invalid value "perhaps"' in out and "test failed" in out
