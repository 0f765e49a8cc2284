"""Secrets hygiene: private keys stay on the host (0600, git-ignored), are never baked
into an image, and nothing the lab prints or serves echoes a key or a full certificate."""

import base64
import io
import subprocess
import tarfile
from pathlib import Path

import docker.errors
import pytest
from cryptography.hazmat.primitives import serialization

from lab import certs, images
from lab.client import request
from lab.settings import REPO_ROOT


def key_fingerprints(certs_dir: Path) -> dict:
    """path -> a 24-byte piece of each private key's DER body (what a leak would contain)."""
    found = {}
    for path in sorted(certs_dir.rglob("*")):
        if path.suffix not in (".key", ".pem") or not path.is_file():
            continue
        data = path.read_bytes()
        if b"PRIVATE KEY" not in data:
            continue
        key = serialization.load_pem_private_key(data[data.index(b"-----BEGIN PRIVATE KEY"):], password=None)
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        found[str(path)] = der[-24:]
    return found


def test_keys_are_git_ignored():
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files"], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert not [f for f in tracked if f.endswith((".key", ".pem")) or f.startswith("certs/")]
    ignored = subprocess.run(["git", "-C", str(REPO_ROOT), "check-ignore", "certs/ca.key",
                              "certs/clients/alice.key", "build/x/compose.env"],
                             capture_output=True, text=True, check=False)
    assert ignored.stdout.split() == ["certs/ca.key", "certs/clients/alice.key", "build/x/compose.env"]


# Where an image build could leave a file: everything but the distribution's own /usr
# (which only Debian packages write). /usr/local is scanned.
SCANNED = ("/etc", "/root", "/home", "/opt", "/srv", "/tmp", "/var", "/usr/local", "/certs", "/run")


def test_no_key_is_baked_into_an_image(docker_client, certs_dir):
    """Read each lab image's writable trees and look for any lab private key's bytes."""
    needles = key_fingerprints(certs_dir)
    assert len(needles) >= 10  # CA, intermediate, rogue, server, health, clients
    for role, ref in images.image_refs(docker_client).items():
        container = docker_client.containers.create(ref, command=["true"])
        try:
            scanned = 0
            for top in SCANNED:
                try:
                    stream, _ = container.get_archive(top)
                except docker.errors.NotFound:
                    continue
                with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                    # (the client's /certs/ca.pem is a symlink into its trust mount: no data)
                    assert not [m.name for m in tar.getmembers()
                                if m.name.startswith(("etc/lab/", "certs/")) and not m.issym()], role
                    for member in tar.getmembers():
                        if not member.isfile() or member.size > 2_000_000:
                            continue
                        data = tar.extractfile(member).read()
                        scanned += 1
                        for path, needle in needles.items():
                            assert needle not in data and base64.b64encode(needle)[:24] not in data, \
                                f"{path} found in {role} image at {member.name}"
            assert scanned > 100, f"{role}: only {scanned} files scanned"
        finally:
            container.remove(force=True)


def test_logs_and_pages_never_echo_keys_or_certificates(lab, certs_dir, from_host, nlb_port):
    # traffic that would tempt a leak: every client, and the sorry page fetched directly
    for name in certs.CLIENT_NAMES:
        assert request(from_host, name, port=nlb_port).status in (200, 400), name
    sorry = lab.settings.sorry_ip  # the host sits on the vpc bridge: ask the sorry server itself
    proc = subprocess.run(["curl", "-sS", "--max-time", "5", "--haproxy-protocol", "--cacert",
                           str(certs.Layout(certs_dir).ca_cert), "--resolve", f"www.lab.test:443:{sorry}",
                           "-w", "\n%{http_code}", "https://www.lab.test/"],
                          capture_output=True, text=True, timeout=10, check=False)
    sorry_page, _, status = proc.stdout.rpartition("\n")
    assert status == "503" and "maintenance" in sorry_page.lower(), proc.stdout[-300:] + proc.stderr
    logs = lab.stack.compose.logs(tail=5000)
    for text in (logs, str(sorry_page)):
        assert "BEGIN" not in text and "PRIVATE KEY" not in text
    lay = certs.Layout(certs_dir)
    for name in certs.CLIENT_NAMES:
        body_line = lay.client_cert(name).read_text().splitlines()[3]  # a line from inside the PEM body
        assert body_line not in logs
    for needle in key_fingerprints(certs_dir).values():
        assert base64.b64encode(needle)[:24].decode() not in logs
