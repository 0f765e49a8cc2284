"""The deregistration settings: AWS's defaults and range, one-line errors naming the fix."""

import pytest

from lab.errors import SettingsError
from lab.settings import Settings


def test_defaults_are_aws_defaults():
    s = Settings.from_env(env={})
    assert s.deregistration_delay == 300.0  # deregistration_delay.timeout_seconds
    assert s.deregistration_termination is False  # connection_termination.enabled


@pytest.mark.parametrize("raw, seconds", [("3s", 3.0), ("500ms", 0.5), ("5m", 300.0), ("1h", 3600.0),
                                          ("3600s", 3600.0), ("0", 0.0), ("0s", 0.0)])
def test_delays_in_aws_range_pass(raw, seconds):
    assert Settings.from_env(env={"LAB_DEREGISTRATION_DELAY": raw}).deregistration_delay == seconds


@pytest.mark.parametrize("raw", ["3601s", "2h", "300", "-1s", "5 m", "soon", ""])
def test_bad_delays_name_the_range(raw):
    with pytest.raises(SettingsError, match=r"^LAB_DEREGISTRATION_DELAY=.*: use a time from 0s to 3600s "
                                            r"\(AWS's range\), e\.g\. 300s"):
        Settings.from_env(env={"LAB_DEREGISTRATION_DELAY": raw})


@pytest.mark.parametrize("raw, on", [("on", True), ("off", False), ("true", True), ("0", False)])
def test_termination_is_a_flag(raw, on):
    env = {"LAB_DEREGISTRATION_CONNECTION_TERMINATION": raw}
    assert Settings.from_env(env=env).deregistration_termination is on


def test_bad_termination_says_on_or_off():
    with pytest.raises(SettingsError, match=r"^LAB_DEREGISTRATION_CONNECTION_TERMINATION='sometimes': use on or off$"):
        Settings.from_env(env={"LAB_DEREGISTRATION_CONNECTION_TERMINATION": "sometimes"})
