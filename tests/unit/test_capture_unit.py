"""`lab capture` without Docker: its one-line errors, what it captures, its bounds, and where
the files go (`lab down` removes them unless kept). tests/integration/test_capture.py reads
real captures with tshark."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import capture
from lab.errors import LabError, SettingsError
from lab.settings import Settings


class FakeStack:
    settings = Settings(project="t")


def run_lab(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          env=env, check=False, timeout=60)


def test_without_dumpcap_the_error_names_the_package(monkeypatch):
    monkeypatch.setattr(capture.shutil, "which", lambda name: None)
    with pytest.raises(LabError, match=r"^dumpcap is not installed: `apt-get install tshark`"):
        capture.check_tools()


def test_not_root_the_error_names_sudo(monkeypatch):
    monkeypatch.setattr(capture.shutil, "which", lambda name: "/usr/bin/dumpcap")
    monkeypatch.setattr(capture.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match=r"needs root: run `sudo -E \.venv/bin/lab capture"):
        capture.check_tools()


def test_the_demo_decides_what_is_captured_and_it_must_be_running():
    running = {"nlb", "alb", "client"}
    assert capture.load_balancers(FakeStack(), running, demo="alb-breaks-mtls") == ("nlb", "alb")
    assert capture.load_balancers(FakeStack(), running, chosen=("alb-mtls-verify",)) == ("alb",)
    assert capture.load_balancers(FakeStack(), running) == ("nlb", "alb")
    with pytest.raises(LabError, match=r"the cloudfront load balancer is not running: `lab up --design cloudfront-mtls`"):
        capture.load_balancers(FakeStack(), running, demo="cloudfront-mtls")
    with pytest.raises(LabError, match=r"the nlb-tls load balancer is not running"):
        capture.load_balancers(FakeStack(), running, chosen=("nlb-tls-mtls",))
    with pytest.raises(SettingsError, match=r"--demo 'nope': choose one of alb-breaks-mtls"):
        capture.load_balancers(FakeStack(), running, demo="nope")
    with pytest.raises(LabError, match=r"t is not running: `lab up` first"):
        capture.load_balancers(FakeStack(), set())


def test_each_capture_is_bounded_in_time_and_size_and_filtered_to_one_address(tmp_path):
    target = capture.Target("nlb", "vpc", "br-0123456789ab", "198.51.100.10")
    argv = capture.Capture(tmp_path, [target], seconds=42, max_mb=3).argv(target)
    text = " ".join(argv)
    assert "-i br-0123456789ab -f host 198.51.100.10" in text
    assert "-a duration:42 -a filesize:3000" in text
    assert argv[argv.index("-w") + 1] == str(tmp_path / "nlb-vpc.pcapng")


def test_captures_live_in_the_build_folder_unless_kept(tmp_path):
    s = Settings(project="t", home=tmp_path)
    assert capture.captures_dir(s) == tmp_path / "build" / "t" / "captures"
    assert capture.kept_dir(s) == tmp_path / "captures"
    assert capture.remove_captures(s) is None
    (capture.captures_dir(s) / "20261201T000000Z").mkdir(parents=True)
    (capture.kept_dir(s) / "t-20261201T000000Z").mkdir(parents=True)
    assert capture.remove_captures(s) == capture.captures_dir(s)
    assert not capture.captures_dir(s).exists() and capture.kept_dir(s).exists()


def test_the_printed_commands_open_the_files_with_the_key_log():
    files = [Path("/c/nlb-internet.pcapng"), Path("/c/nlb-vpc.pcapng")]
    lines = capture.commands(files, Path("/c/keylog.txt"))
    assert lines[1] == ("wireshark -o tls.keylog_file:/c/keylog.txt -o tcp.try_heuristic_first:TRUE "
                        "/c/nlb-vpc.pcapng")
    assert lines[-1].startswith("tshark -r /c/nlb-vpc.pcapng -o tls.keylog_file:/c/keylog.txt")


def test_demo_and_seconds_together_are_a_bad_setting():
    proc = run_lab("capture", "--demo", "alb-breaks-mtls", "--seconds", "5")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: bad setting: --demo and --seconds: choose one (a demo's capture ends with the demo)"


class Ended:
    """A dumpcap that has already stopped (by its own limit)."""

    def poll(self):
        return 0

    def wait(self, timeout=None):
        return 0


def test_a_file_that_stopped_at_its_limit_is_named(tmp_path):
    small, full, early = (capture.Target(lb, "vpc", "br-x", "198.51.100.10") for lb in ("nlb", "alb", "nlb-tls"))
    cap = capture.Capture(tmp_path, [small, full, early], max_mb=1)
    cap.file(small).write_bytes(b"x" * 999_999)
    cap.file(full).write_bytes(b"x" * 1_000_100)
    cap.procs = {early: Ended()}
    assert cap.limited() == ["alb-vpc"]  # by size
    cap.stop(mark=False)  # nlb-tls's dumpcap had stopped before the end: its time ran out
    assert cap.limited() == ["alb-vpc", "nlb-tls-vpc"]
    waited = capture.Capture(tmp_path, [early], max_mb=1, procs={early: Ended()})
    waited.wait()
    waited.stop(mark=False)
    assert waited.limited() == []  # --seconds: the time limit was the point


def test_under_sudo_the_files_go_back_to_the_user(tmp_path, monkeypatch):
    folder = tmp_path / "captures" / "20261201T000000Z"
    folder.mkdir(parents=True)
    (folder / "nlb-vpc.pcapng").write_bytes(b"")
    owned = []
    monkeypatch.setattr(capture.os, "geteuid", lambda: 0)
    monkeypatch.setattr(capture.os, "chown", lambda path, uid, gid: owned.append((Path(path).name, uid, gid)))
    capture.give_back(folder, env={})
    assert owned == []  # root's own run: nothing to hand back
    capture.give_back(folder, env={"SUDO_UID": "1000", "SUDO_GID": "1001"})
    assert owned == [("captures", 1000, 1001), ("20261201T000000Z", 1000, 1001), ("nlb-vpc.pcapng", 1000, 1001)]
