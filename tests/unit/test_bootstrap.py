"""Bootstrapping the base image: the Debian mirror an air-gapped machine's apt already uses,
the archive signature check, and the timeouts."""

import subprocess
import time

import pytest

from lab import bootstrap
from lab.errors import CommandFailed, ImageError
from lab.proc import stream


def test_deb822_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example.internal/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example.internal/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n")
    assert bootstrap.find_mirrors(tmp_path, env={}) == (
        "http://mirror.example.internal/debian", "http://mirror.example.internal/debian-security")


def test_one_line_sources_with_options_and_comments(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# local mirror\ndeb [arch=amd64 signed-by=/x.gpg] https://apt.corp.example/debian/ bookworm main\n"
        "deb-src http://ignored.example/debian bookworm main\n")
    mirror, security = bootstrap.find_mirrors(tmp_path, env={})
    assert mirror == "https://apt.corp.example/debian"
    assert security == bootstrap.DEFAULT_SECURITY


def test_env_override_and_fallback(tmp_path):
    assert bootstrap.find_mirrors(tmp_path, env={"LAB_DEBIAN_MIRROR": "http://m/debian"})[0] == "http://m/debian"
    assert bootstrap.find_mirrors(tmp_path, env={}) == (bootstrap.DEFAULT_MIRROR, bootstrap.DEFAULT_SECURITY)


# -- archive signatures, timeouts ------------------------------------------------


def test_debootstrap_argv_checks_signatures_with_the_keyring():
    argv = bootstrap.debootstrap_argv("trixie", "/var/tmp/rootfs", "http://m/debian", "/k/debian.gpg")
    assert argv == ["debootstrap", "--variant=minbase", "--keyring=/k/debian.gpg",
                    "trixie", "/var/tmp/rootfs", "http://m/debian"]
    assert not any(a.startswith("--no-check") for a in argv)
    assert bootstrap.SUITE == "trixie"


@pytest.mark.parametrize("suite, mirror", [("bookworm", "--no-check-gpg"), ("-x", "http://m/debian")])
def test_debootstrap_argv_refuses_an_option_as_suite_or_mirror(suite, mirror):
    with pytest.raises(ImageError, match=r"is not valid"):
        bootstrap.debootstrap_argv(suite, "/r", mirror, "/k.gpg")


def test_keyring_default_and_override(tmp_path):
    assert bootstrap.DEBIAN_KEYRING == bootstrap.Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    keyring = tmp_path / "debian.gpg"
    keyring.write_bytes(b"x")
    assert bootstrap.find_keyring({"LAB_DEBIAN_KEYRING": str(keyring)}) == keyring


@pytest.mark.parametrize("env", [{"LAB_DEBIAN_KEYRING": "/nonexistent/debian.gpg"}, {}], ids=["override", "default"])
def test_missing_keyring_is_refused(env, monkeypatch, tmp_path):
    monkeypatch.setattr(bootstrap, "DEBIAN_KEYRING", tmp_path / "absent.gpg")
    with pytest.raises(ImageError, match=r"keyring .* not found; `sudo apt-get install debian-archive-keyring`") as exc:
        bootstrap.find_keyring(env)
    assert "\n" not in str(exc.value)


def _as_root_with_debootstrap(monkeypatch):
    # the debootstrap path (mmdebstrap, when the host has it, is tests/unit/test_mmdebstrap.py)
    monkeypatch.setattr(bootstrap.shutil, "which", lambda name: None if name == "mmdebstrap" else f"/usr/sbin/{name}")
    monkeypatch.setattr(bootstrap.os, "geteuid", lambda: 0)


class _Task:
    def line(self, text):
        pass

    def advance(self):
        pass


def test_bootstrap_never_runs_debootstrap_without_the_keyring(monkeypatch, tmp_path):
    _as_root_with_debootstrap(monkeypatch)
    monkeypatch.setattr(bootstrap, "stream", lambda *a, **k: pytest.fail("debootstrap ran unverified"))
    with pytest.raises(ImageError, match=r"apt-get install debian-archive-keyring"):
        bootstrap.bootstrap_base_image("debian:trixie-slim", _Task(), workdir=str(tmp_path),
                                       env={"LAB_DEBIAN_KEYRING": str(tmp_path / "absent.gpg")})


def test_bootstrap_passes_keyring_and_timeout(monkeypatch, tmp_path):
    _as_root_with_debootstrap(monkeypatch)
    keyring = _keyring_and_scripts(monkeypatch, tmp_path)
    calls = []

    def fake_stream(argv, on_line, **kwargs):
        calls.append((argv, kwargs))
        raise CommandFailed(argv, -9, "I: Retrieving InRelease", "timed out after 900 s")

    monkeypatch.setattr(bootstrap, "stream", fake_stream)
    monkeypatch.setattr(bootstrap, "APT_SOURCES", tmp_path)
    with pytest.raises(ImageError, match=r"debootstrap failed: timed out after 900 s \(mirror http://m/debian"):
        bootstrap.bootstrap_base_image("debian:trixie-slim", _Task(), workdir=str(tmp_path),
                                       env={"LAB_DEBIAN_KEYRING": str(keyring), "LAB_DEBIAN_MIRROR": "http://m/debian"})
    (argv, kwargs), = calls
    assert f"--keyring={keyring}" in argv and "--no-check-gpg" not in argv
    assert argv[-3] == bootstrap.SUITE and argv[-1] == "http://m/debian"
    assert kwargs["timeout"] == bootstrap.DEBOOTSTRAP_TIMEOUT == 900
    assert not list(tmp_path.glob("lab-rootfs-*"))  # the temporary rootfs is removed


def _keyring_and_scripts(monkeypatch, tmp_path, suites=(bootstrap.SUITE,)):
    keyring = tmp_path / "debian.gpg"
    keyring.write_bytes(b"x")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for suite in suites:
        (scripts / suite).write_text("")
    monkeypatch.setattr(bootstrap, "DEBOOTSTRAP_SCRIPTS", scripts)
    monkeypatch.setattr(bootstrap, "APT_SOURCES", tmp_path)
    return keyring


def test_a_debootstrap_that_does_not_know_the_suite_is_named(monkeypatch, tmp_path):
    _as_root_with_debootstrap(monkeypatch)
    keyring = _keyring_and_scripts(monkeypatch, tmp_path, suites=("bookworm",))
    monkeypatch.setattr(bootstrap, "stream", lambda *a, **k: pytest.fail("debootstrap ran without its script"))
    with pytest.raises(ImageError, match=r"does not know Debian trixie .*apt-get install debootstrap` "
                                         r"\(1\.0\.128\+nmu2\+deb12u2 or newer\)"):
        bootstrap.bootstrap_base_image("debian:trixie-slim", _Task(), workdir=str(tmp_path),
                                       env={"LAB_DEBIAN_KEYRING": str(keyring)})


def test_a_keyring_without_the_suites_keys_names_the_package(monkeypatch, tmp_path):
    _as_root_with_debootstrap(monkeypatch)
    keyring = _keyring_and_scripts(monkeypatch, tmp_path)
    # debootstrap's own words (functions, read_gpg_status) when no signature checks out
    said = ("I: Retrieving InRelease\nI: Checking Release signature\n"
            "E: Release signed by unknown key (key id 762F67A0B2C39DE4)\n"
            "   The specified keyring /k.gpg may be incorrect or out of date.\n"
            "   You can find the latest Debian release key at https://ftp-master.debian.org/keys.html")

    def fake_stream(argv, on_line, **kwargs):
        raise CommandFailed(argv, 1, said, "")

    monkeypatch.setattr(bootstrap, "stream", fake_stream)
    with pytest.raises(ImageError, match=r"signed by keys that .*debian.gpg does not hold; `sudo apt-get install "
                                         r"debian-archive-keyring` \(2023\.3\+deb12u2 or newer"):
        bootstrap.bootstrap_base_image("debian:trixie-slim", _Task(), workdir=str(tmp_path),
                                       env={"LAB_DEBIAN_KEYRING": str(keyring), "LAB_DEBIAN_MIRROR": "http://m/debian"})


def test_docker_import_times_out(monkeypatch, tmp_path):
    seen = {}

    def fake_run(argv, **kwargs):
        seen.update(kwargs)
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    monkeypatch.setattr(bootstrap.subprocess, "run", fake_run)
    with pytest.raises(ImageError, match=r"docker import of .* timed out after 300 s"):
        bootstrap._import(tmp_path, "debian:trixie-slim")
    assert seen["timeout"] == bootstrap.IMPORT_TIMEOUT == 300


def test_stream_timeout_kills_the_command_and_what_it_started():
    lines = []
    start = time.monotonic()
    # sh starts `sleep` as a child holding the output pipe: killing only sh would not end the read
    with pytest.raises(CommandFailed, match=r"timed out after 0\.5 s") as exc:
        stream(["sh", "-c", "echo started; sleep 30; echo never"], lines.append, timeout=0.5)
    assert time.monotonic() - start < 10
    assert exc.value.stdout == "started" and lines == ["started\n"]


def test_stream_without_timeout_or_within_it():
    assert stream(["sh", "-c", "echo a; echo b"], lambda line: None) == ["a", "b"]
    assert stream(["sh", "-c", "echo a"], lambda line: None, timeout=30) == ["a"]
    with pytest.raises(CommandFailed, match=r"exited 3$"):
        stream(["sh", "-c", "exit 3"], lambda line: None, timeout=30)
