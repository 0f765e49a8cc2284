"""The ALB with no healthy target, as rendered: with LAB_SORRY=dns (the default) each of its
four target groups fails open, as an AWS ALB does ("If a target group contains only unhealthy
registered targets, the load balancer routes requests to all those targets": docs/aws-parity.md);
with LAB_SORRY=lb (the lab's shortcut) each keeps the backup sorry server. The running
behaviour: tests/integration/test_alb_fail_open.py."""

import re

import pytest

from lab import render
from lab.settings import Settings

LISTENERS = [listener["name"] for listener in render.listeners("alb")]


def alb_cfg(tmp_path, **env) -> str:
    return render.haproxy_cfg(Settings.from_env(env={"LAB_HOME": str(tmp_path), **env}), "alb")


def section(cfg: str, header: str) -> str:
    """One proxy section of a rendered haproxy.cfg: its header line up to the next blank line."""
    return cfg.split(f"\n{header}\n", 1)[1].split("\n\n", 1)[0]


def servers(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("server ")]


def default_server(text: str) -> str:
    return next(line.strip() for line in text.splitlines() if line.strip().startswith("default-server "))


def test_the_alb_has_four_target_groups():
    assert LISTENERS == ["alb", "alb_mtls_verify", "alb_mtls_passthrough", "alb_before"]


@pytest.mark.parametrize("listener", LISTENERS)
def test_with_sorry_dns_each_target_group_fails_open_to_an_unchecked_copy(tmp_path, listener):
    cfg = alb_cfg(tmp_path)  # LAB_SORRY=dns, the default
    assert "server sorry" not in cfg
    # the requests the WAF let through: to the copy while no target of the group is UP
    inspected = section(cfg, f"frontend {listener}_inspected")
    assert (f"use_backend targets_{listener}_fail_open if {{ nbsrv(targets_{listener}) lt 1 }}\n"
            f"    default_backend targets_{listener}") in inspected
    # and the WAF is still on the path: the listener sends everything to it
    assert section(cfg, f"frontend {listener}").rstrip().endswith(f"default_backend waf_{listener}")
    group, copy = section(cfg, f"backend targets_{listener}"), section(cfg, f"backend targets_{listener}_fail_open")
    # the same targets, spoken to the same way (new TLS, verified; the AWSALB cookie), never checked
    assert servers(copy) == [re.sub(r" track \S+$", "", line) for line in servers(group)]
    assert [s.split()[1] for s in servers(copy)] == ["web1", "web2"]
    assert default_server(copy) == "default-server " + render.environment().get_template(
        "haproxy/macros.j2").module.reencrypt("www.lab.test")
    assert default_server(group).startswith(default_server(copy))
    assert " check" not in copy and "track" not in copy and "backup" not in copy
    assert "cookie AWSALB insert indirect nocache httponly secure" in copy and "balance roundrobin" in copy


@pytest.mark.parametrize("listener", LISTENERS)
def test_with_sorry_lb_each_target_group_keeps_the_backup_sorry_server(tmp_path, listener):
    cfg = alb_cfg(tmp_path, LAB_SORRY="lb")
    assert "fail_open" not in cfg
    assert "use_backend" not in section(cfg, f"frontend {listener}_inspected")
    sorry = servers(section(cfg, f"backend targets_{listener}"))[-1]
    assert sorry.startswith("server sorry ") and " backup send-proxy-v2 " in sorry
    # checked in the first target group (rarely), followed by the other two
    if listener == LISTENERS[0]:
        assert sorry.endswith("port 443 check-send-proxy inter 10s")
    else:
        assert sorry.endswith(f"track targets_{LISTENERS[0]}/sorry")


def test_the_targets_are_checked_once_in_either_mode(tmp_path):
    for env in ({}, {"LAB_SORRY": "lb"}):
        cfg = alb_cfg(tmp_path, **env)
        assert len(re.findall(r"check inter \S+ fastinter", cfg)) == 1, env
        assert cfg.count("option httpchk") == 1, env
