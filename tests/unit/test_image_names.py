"""Another image namespace (LAB_IMAGE_PREFIX, LAB_BASE_IMAGE): names Docker accepts only."""

import pytest

from lab import images
from lab.errors import SettingsError


@pytest.mark.parametrize("var, value", [
    ("IMAGE_PREFIX", "Perf Lab"), ("IMAGE_PREFIX", "perf:1"), ("BASE_IMAGE", "-debian:trixie"), ("BASE_IMAGE", "")])
def test_a_bad_image_name_names_the_setting(monkeypatch, var, value):
    monkeypatch.setattr(images, var, value)
    with pytest.raises(SettingsError, match=rf"LAB_{var}=.* is not a Docker image name: use lowercase"):
        images.check_names()


def test_the_default_and_a_namespace_pass(monkeypatch):
    images.check_names()
    monkeypatch.setattr(images, "IMAGE_PREFIX", "perf-cold")
    monkeypatch.setattr(images, "BASE_IMAGE", "perf-cold/debian:trixie-slim")
    images.check_names()
