"""`lab bench --cold`'s set-up: a namespace, project and ports of its own, and its refusals.
The measurement itself runs `make lab-up` from nothing (about a minute): `lab bench --cold`."""

import pytest

from lab import bench_cold
from lab.errors import LabError


def test_the_cold_run_touches_nobody_elses_images_project_or_ports(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_PROJECT", "mine")
    monkeypatch.setenv("LAB_NLB_PORT", "8443")
    monkeypatch.setenv("LAB_SORRY", "lb")
    env = bench_cold.environment(tmp_path)
    assert env["LAB_IMAGE_PREFIX"] == bench_cold.PREFIX != "mtls-lab"
    assert env["LAB_BASE_IMAGE"].startswith(bench_cold.PREFIX + "/")
    assert (env["LAB_PROJECT"], env["LAB_HOME"]) == (bench_cold.PROJECT, str(tmp_path))
    assert env["LAB_NLB_PORT"] == env["LAB_DNS_PORT"] == env["LAB_CDN_PORT"] == "0"
    assert "LAB_SORRY" not in env  # the caller's own settings do not leak into the fresh clone
    assert env["PATH"]


class _Images:
    def __init__(self, tags):
        self.tags = tags

    def list(self):
        return [type("Image", (), {"tags": self.tags})()]


def test_leftover_images_of_an_earlier_run_are_named_with_their_removal(tmp_path):
    dc = type("DC", (), {"images": _Images([f"{bench_cold.PREFIX}/haproxy:abc", "mtls-lab/haproxy:def"])})()
    with pytest.raises(LabError, match=f"`docker rmi {bench_cold.PREFIX}/haproxy:abc`$"):
        bench_cold.measure(dc, ui=None)


def test_outside_a_git_checkout_it_says_where_to_run_it(tmp_path):
    dc = type("DC", (), {"images": _Images([])})()
    with pytest.raises(LabError, match="run it from a git checkout"):
        bench_cold.measure(dc, ui=None, checkout=tmp_path)
