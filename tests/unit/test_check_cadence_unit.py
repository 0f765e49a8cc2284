"""How often the load balancers check their targets and the sorry page: rarely enough that a
lab at rest idles, often enough that a dead target is DOWN within the documented 5 s
(docs/reliability.md). The rates on the wire: tests/integration/test_check_cadence.py."""

import re

import pytest

from lab import render
from lab.errors import SettingsError
from lab.settings import Settings

CHECKING = ("nlb", "alb", "nlb-tls")  # CloudFront sends its origins no checks


def settings(tmp_path, **env):
    return Settings.from_env(env={"LAB_HOME": str(tmp_path), **env})


def test_defaults_keep_the_documented_detection_bound(tmp_path):
    s = settings(tmp_path)
    # 2 s to the next check, two failed checks of up to 1 s each, 500 ms between them
    assert s.detection_bound_seconds == pytest.approx(4.5)
    assert s.detection_bound_seconds <= 5.0  # docs/reliability.md, tests/integration/test_faults.py
    # the old cadence (inter 1 s, fastinter unset = inter) had the same 4 s-and-a-bit bound
    assert settings(tmp_path, LAB_CHECK_INTER="1s", LAB_CHECK_FASTINTER="1s").detection_bound_seconds == 4.0


@pytest.mark.parametrize("lb", CHECKING)
def test_targets_are_checked_fast_only_while_their_state_is_in_doubt(tmp_path, lb):
    cfg = render.haproxy_cfg(settings(tmp_path), lb)
    checks = re.findall(r"check inter (\S+) fastinter (\S+) downinter (\S+) fall 2 rise 2", cfg)
    assert checks == [("2s", "500ms", "500ms")]  # one checking backend, one default-server line


@pytest.mark.parametrize("lb", CHECKING)
def test_the_sorry_page_is_checked_rarely_by_every_load_balancer(tmp_path, lb):
    # LAB_SORRY=lb: every checking load balancer has a sorry server (with dns they fail open)
    cfg = render.haproxy_cfg(settings(tmp_path, LAB_SORRY_CHECK_INTER="20s", LAB_SORRY="lb"), lb)
    checked = [line for line in cfg.splitlines() if line.strip().startswith("server sorry") and "track" not in line]
    assert len(checked) == 1 and checked[0].endswith(" inter 20s"), checked
    # its fall, rise, fastinter and downinter are the targets' (default-server): once a check
    # fails it is re-checked every 500 ms, and a DOWN sorry page is back within a second
    assert "downinter 500ms" in cfg


def test_readiness_waits_a_sorry_round_for_a_recreated_sorry_page(tmp_path):
    s = settings(tmp_path)
    assert s.check_round_seconds("web1") == 3.0
    assert s.check_round_seconds("sorry") == 11.0


@pytest.mark.parametrize("var", ["LAB_CHECK_FASTINTER", "LAB_SORRY_CHECK_INTER"])
def test_a_bad_check_interval_names_the_setting(tmp_path, var):
    with pytest.raises(SettingsError, match=rf"{var}='often' is not a HAProxy time: use a number and a unit"):
        settings(tmp_path, **{var: "often"})
