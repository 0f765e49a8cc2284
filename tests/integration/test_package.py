"""The lab as other projects use it: `lab status --json`, and the wheel installed into a
fresh virtualenv outside this repository, bringing a lab up from an empty folder."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import requests

from lab import docker_env
from lab.settings import REPO_ROOT, Settings

ANY_PORT = {var: "0" for var in Settings().all_host_ports}


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAB_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(extra)
    return env


def test_status_json_shows_designs_certificates_and_pins(lab):
    source = lab.settings.client_extra_ips[11]
    (reply,) = lab.from_ip(source).get("alice")
    proc = subprocess.run([sys.executable, "-m", "lab", "status", "--json"], capture_output=True, text=True,
                          env=clean_env(LAB_HOME=str(lab.settings.home), LAB_PROJECT=lab.settings.project),
                          check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["designs_up"] == ["nlb", "alb", "alb-mtls-verify", "alb-mtls-passthrough", "alb-before", "nlb-tls-mtls",
                                    "cloudfront-mtls", "cloudfront-mtls-optional"]
    assert {r["service"]: r["health"] for r in status["services"]}["web1"] == "healthy"
    assert status["stick_tables"]["nlb"][source] == reply.backend
    assert status["networks"]["internet"] == str(lab.settings.internet_subnet)
    assert status["dns"] == {"record": "www.lab.test", "answer": [lab.settings.lb_ips("nlb")[0]],
                             "ttl": lab.settings.dns_ttl, "answers": ["nlb"]}
    assert all(c["state"] == "ok" for c in status["certificates"]) and status["warnings"] == []


def test_lab_client_fixture_trusts_only_the_lab_ca(lab, lab_client):
    """The plugin's lab_client: the lab CA, the client's certificate, nothing from the machine."""
    ok = lab_client("alice").get(lab.url("/whoami"), timeout=5)
    assert ok.json()["client_verify"] == "SUCCESS"
    assert lab_client(None).get(lab.url("/whoami"), timeout=5).status_code == 400
    public = requests.Session()  # the machine's CA bundle does not know the lab CA
    public.trust_env = False
    try:
        public.get(lab.url("/whoami"), timeout=5)
        raise AssertionError("the machine's CA bundle trusted the lab CA")
    except requests.exceptions.SSLError:
        pass


def test_wheel_installs_and_runs_from_an_empty_folder(tmp_path, lab_docker):
    # build the wheel from a copy of the tracked files (the checkout stays untouched)
    source = tmp_path / "src"
    tracked = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files"], capture_output=True, text=True,
                             check=True).stdout.split()
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, source / name)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = dist.glob("mtls_lab-*.whl")
    shipped = zipfile.ZipFile(wheel).namelist()  # `lab dashboard` serves its page from the package
    assert {f"lab/dashboard/static/{name}" for name in ("index.html", "dashboard.js", "dashboard.css")} <= set(shipped)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, capture_output=True,
                   timeout=600)
    lab_cmd = str(venv / "bin" / "lab")
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    internet, vpc = docker_env.free_subnets(lab_docker, 2)
    env = clean_env(**ANY_PORT, LAB_PROJECT=f"mtlslab-wheel-{os.getpid()}",
                    LAB_INTERNET_SUBNET=str(internet), LAB_VPC_SUBNET=str(vpc))

    def run(*args):
        return subprocess.run([lab_cmd, *args], cwd=empty, env=env, capture_output=True, text=True, timeout=600)

    try:
        up = run("up", "-q")
        assert up.returncode == 0, up.stderr[-2000:]
        workdir = empty / ".lab"
        assert (workdir / "certs" / "ca.pem").exists() and (workdir / "build").is_dir()
        shown = run("status", "--json")
        assert shown.returncode == 0, shown.stderr[-2000:]
        status = json.loads(shown.stdout)
        port = next(int(p.split(":")[1].split("->")[0]) for r in status["services"] if r["service"] == "nlb"
                    for p in r["ports"] if p.endswith("->443"))
        session = requests.Session()
        session.trust_env = False
        reply = session.get(f"https://localhost:{port}/whoami", verify=str(workdir / "certs" / "ca.pem"),
                            cert=(str(workdir / "certs/clients/alice.crt"), str(workdir / "certs/clients/alice.key")),
                            timeout=5)
        assert reply.json()["client_verify"] == "SUCCESS"
    finally:
        down = run("down", "-q")
    assert down.returncode == 0, down.stderr
