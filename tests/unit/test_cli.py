"""The `lab` command as a user runs it: real subprocesses, one-line errors with the fix."""

import os
import subprocess
import sys

import pytest


def run_lab(*args, env_extra=None, home=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    if home is not None:
        env["LAB_HOME"] = str(home)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          env=env, check=False, timeout=60)


def test_certs_command_generates_then_is_idempotent(tmp_path):
    first = run_lab("certs", home=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "issued lab CA" in first.stderr
    assert (tmp_path / "certs" / "clients" / "alice.key").exists()
    second = run_lab("certs", home=tmp_path)
    assert second.returncode == 0
    assert "complete and current" in second.stderr


def test_bad_setting_is_one_line_and_exit_2(tmp_path):
    proc = run_lab("certs", home=tmp_path, env_extra={"LAB_KEY_TYPE": "dsa"})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: bad setting: LAB_KEY_TYPE='dsa': use one of ec, rsa")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["status", "up", "down"])
def test_docker_unreachable_names_the_fix(tmp_path, command):
    proc = run_lab(command, home=tmp_path, env_extra={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert proc.returncode == 1
    assert "Docker engine not reachable" in proc.stderr and "start it" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "build").exists() or command == "down"


def test_help_lists_the_commands():
    proc = run_lab("--help")
    for command in ("up", "down", "status", "certs", "images", "logs"):
        assert f"  {command} " in proc.stdout
