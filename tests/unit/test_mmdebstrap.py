"""The base image with mmdebstrap where the host has it (lab/mmdebstrap.py); the real run is
measured by a cold `make lab-up` (docs/performance.md)."""

import pytest

from lab import bootstrap, mmdebstrap
from lab.errors import CommandFailed, ImageError

SOURCES = bootstrap._sources_list("http://m/debian", "http://m/debian-security").splitlines()


def test_argv_checks_signatures_and_gives_the_image_its_sources():
    argv = mmdebstrap.argv("trixie", "/var/tmp/r/rootfs.tar", SOURCES, "/k/debian.gpg")
    assert argv[:5] == ["mmdebstrap", "--variant=minbase", "--keyring=/k/debian.gpg", "--format=tar", "trixie"]
    assert argv[5:] == ["/var/tmp/r/rootfs.tar", "deb http://m/debian trixie main",
                        "deb http://m/debian trixie-updates main", "deb http://m/debian-security trixie-security main"]
    assert not any("check-gpg" in a or "insecure" in a for a in argv)


@pytest.mark.parametrize("suite, sources", [("--no-check-gpg", SOURCES), ("trixie", ["--aptopt=x"])])
def test_argv_refuses_an_option_as_suite_or_source(suite, sources):
    with pytest.raises(ImageError, match=r"is not valid"):
        mmdebstrap.argv(suite, "/r.tar", sources, "/k.gpg")


def test_lab_bootstrap_tool_debootstrap_skips_it(monkeypatch):
    monkeypatch.setattr(mmdebstrap.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert mmdebstrap.available({}) and mmdebstrap.available({"LAB_BOOTSTRAP_TOOL": "auto"})
    assert not mmdebstrap.available({"LAB_BOOTSTRAP_TOOL": "debootstrap"})
    monkeypatch.setattr(mmdebstrap.shutil, "which", lambda name: None)
    assert not mmdebstrap.available({})


class _Task:
    def line(self, text):
        pass

    def advance(self):
        pass


def test_an_unknown_signing_key_names_the_keyring_and_nothing_is_left(monkeypatch, tmp_path):
    def fake_stream(argv, on_line, **kwargs):
        assert kwargs["timeout"] == mmdebstrap.TIMEOUT
        raise CommandFailed(argv, 1, "", "W: GPG error: ... NO_PUBKEY 762F67A0B2C39DE4\nE: apt-get update failed")

    monkeypatch.setattr(mmdebstrap, "stream", fake_stream)
    monkeypatch.setattr(mmdebstrap, "_import", lambda *a: pytest.fail("imported a failed bootstrap"))
    with pytest.raises(ImageError, match=r"signed by keys that /k.gpg does not hold; `sudo apt-get install debian-archive"):
        mmdebstrap.bootstrap("x:y", _Task(), suite="trixie", sources=SOURCES, keyring="/k.gpg", parent=str(tmp_path))
    assert not list(tmp_path.iterdir())
