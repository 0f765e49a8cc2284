"""`lab capture` read back with tshark: what a trainer points at in Wireshark.

On the NLB path the vpc side carries the PROXY v2 header with the client's own address, and
the client's Certificate message reaches the backend (TLS 1.3 encrypts it: only the key log
shows it). On the ALB path the certificate stops at the ALB: with mutual TLS off it is never
asked for; with mutual TLS verify it crosses the internet side only, and the vpc side is a
TLS session of the ALB's own that the client's key log cannot open.
"""

import shutil
import subprocess

import pytest

from lab import capture, keylog
from lab.client import request
from lab.credentials import Credentials
from lab.designs import DESIGNS

ALERTS = {"unknown ca": "48", "bad certificate": "42", "certificate unknown": "46", "certificate required": "116"}


def tshark(path, display_filter, *fields, keys=None):
    """Rows (one list of field values per frame) that tshark finds in ``path``."""
    argv = ["tshark", "-n", "-r", str(path), "-o", "tcp.try_heuristic_first:TRUE"]
    if keys is not None:
        argv += ["-o", f"tls.keylog_file:{keys}"]
    argv += ["-Y", display_filter, "-T", "fields", "-E", "separator=|", *(a for f in fields for a in ("-e", f))]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line.split("|") for line in proc.stdout.splitlines() if line.strip()]


def client_certificates(path, sender, keys=None):
    """The x509 names in the Certificate messages ``sender`` sent."""
    rows = tshark(path, f"ip.src == {sender} && tls.handshake.type == 11", "x509sat.uTF8String", keys=keys)
    return [row[0] for row in rows]


def newest(folder):
    runs = sorted(p for p in folder.iterdir() if p.is_dir())
    assert runs, f"no capture in {folder}"
    return runs[-1]


@pytest.fixture(scope="module")
def demo(lab, lab_cli):
    """The done-when run: `lab capture --demo alb-breaks-mtls`."""
    proc = lab_cli("capture", "--demo", "alb-breaks-mtls", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    folder = newest(capture.captures_dir(lab.settings))
    assert f"tls.keylog_file:{folder / 'keylog.txt'}" in proc.stderr  # the printed commands
    return folder


@pytest.fixture(scope="module")
def verify(lab, docker_client, from_client, from_host):
    """Both load balancers captured through the module's API: through the ALB with mutual TLS
    verify alice is served and rogue-ca refused in the handshake; through the NLB alice with
    TLS 1.2 (curl), and bob from this machine (Python's ssl, the published port)."""
    s = lab.settings
    folder = capture.captures_dir(s) / "by-api"
    cap = capture.Capture(folder, capture.targets(lab.stack, docker_client, ("nlb", "alb")), seconds=60,
                          dumpcap=capture.check_tools())
    capture.prepare_container(from_client.box, cap.keylog)
    where = {"port": DESIGNS["alb-mtls-verify"].container_port, "address": s.lb_ips("alb")[0],
             "source": s.client_pool.demo}
    with keylog.recording(cap.keylog), cap:
        alice = request(from_client, "alice", **where)
        rogue = request(from_client, "rogue-ca", **where)
        old = request(from_client, "alice", source=s.client_pool.demo, tls_version="TLSv1_2")
        bob = request(from_host, "bob", port=lab.nlb_port)
    capture.copy_container_keylog(from_client.box, cap.keylog)
    assert alice.status == 200 and alice.json.get("client_subject", "").startswith("CN=alice"), alice
    assert rogue.handshake_failed and rogue.alert in ALERTS, rogue
    assert (old.status, old.json.get("tls_protocol")) == (200, "TLSv1.2"), old
    assert (bob.status, bob.json.get("tls_protocol")) == (200, "TLSv1.3"), bob
    yield folder, rogue.alert
    shutil.rmtree(folder)


# -- the NLB path ------------------------------------------------------------------------
def test_the_vpc_side_carries_the_proxy_header_with_the_clients_address(lab, demo):
    s = lab.settings
    rows = tshark(demo / "nlb-vpc.pcapng", f"proxy.src.ipv4 == {s.client_pool.demo}", "ip.src", "ip.dst")
    backends = {s.backend_ip(b) for b in ("web1", "web2")}
    assert rows and {(src, dst in backends) for src, dst in rows} == {(s.nlb_vpc_ip, True)}, rows
    # negative controls: the client sends no PROXY header, and the ALB forwards none with its address
    assert tshark(demo / "nlb-internet.pcapng", "proxy", "frame.number") == []
    assert tshark(demo / "alb-vpc.pcapng", f"proxy.src.ipv4 == {s.client_pool.demo}", "frame.number") == []


def test_the_clients_certificate_reaches_the_backend_through_the_nlb(lab, demo):
    names = client_certificates(demo / "nlb-vpc.pcapng", lab.settings.nlb_vpc_ip, keys=demo / "keylog.txt")
    assert any("alice" in n.split(",") for n in names), names
    # the same bytes crossed the internet side: one TLS session, end to end
    inet = client_certificates(demo / "nlb-internet.pcapng", lab.settings.client_pool.demo, keys=demo / "keylog.txt")
    assert any("alice" in n.split(",") for n in inet), inet


def test_without_the_key_log_the_tls13_certificate_is_not_visible(lab, demo):
    path = demo / "nlb-vpc.pcapng"
    assert tshark(path, "tls.handshake.type == 1", "tls.handshake.extensions.supported_version")  # TLS 1.3 hellos
    assert client_certificates(path, lab.settings.nlb_vpc_ip) == []
    # no HTTP inside the sessions to the targets (the DNS server's plain-HTTP look at the NLB's
    # target health, port 8405, crosses this side too: it is not one of them)
    assert tshark(path, "http and tcp.port == 443", "frame.number") == []


def test_the_key_log_shows_the_decrypted_whoami_and_its_answer_on_the_vpc_side(lab, demo):
    path, keys = demo / "nlb-vpc.pcapng", demo / "keylog.txt"
    assert tshark(path, 'http.request.uri == "/whoami"', "ip.src", keys=keys)[0] == [lab.settings.nlb_vpc_ip]
    bodies = [row[0] for row in tshark(path, "http.response.code == 200", "http.file_data", keys=keys)]
    assert any('"client_verify":"SUCCESS"' in b and '"client_subject":"CN=alice' in b for b in bodies), bodies


# -- the ALB path ------------------------------------------------------------------------
def test_the_alb_without_mutual_tls_never_asks_for_the_certificate(lab, demo):
    path, keys, client = demo / "alb-internet.pcapng", demo / "keylog.txt", lab.settings.client_pool.demo
    assert tshark(path, f'ip.src == {client} && http2.header.value == "/whoami"', "frame.number", keys=keys)  # decrypted
    assert tshark(path, "tls.handshake.type == 13", "frame.number", keys=keys) == []  # no CertificateRequest
    assert client_certificates(path, client, keys=keys) == []


def test_the_alb_vpc_side_is_its_own_session_the_clients_keys_cannot_open(lab, demo):
    path, keys = demo / "alb-vpc.pcapng", demo / "keylog.txt"
    alb_vpc = lab.settings.lb_ips("alb")[1]
    assert tshark(path, f"ip.src == {alb_vpc} && tls.handshake.type == 1", "frame.number")  # the ALB's handshakes
    assert client_certificates(path, alb_vpc, keys=keys) == []
    assert tshark(path, "http || http2", "frame.number", keys=keys) == []


def test_with_mutual_tls_verify_the_certificate_stops_at_the_alb(lab, verify):
    folder, _ = verify
    keys, client, alb_vpc = folder / "keylog.txt", lab.settings.client_pool.demo, lab.settings.lb_ips("alb")[1]
    names = client_certificates(folder / "alb-internet.pcapng", client, keys=keys)
    assert any("alice" in n.split(",") for n in names), names
    assert client_certificates(folder / "alb-internet.pcapng", client) == []  # control: TLS 1.3 hides it
    assert client_certificates(folder / "alb-vpc.pcapng", alb_vpc, keys=keys) == []
    assert tshark(folder / "alb-vpc.pcapng", "http || http2", "frame.number", keys=keys) == []


def test_a_refused_client_ends_in_the_albs_tls_alert(lab, verify):
    folder, alert = verify
    alb = lab.settings.lb_ips("alb")[0]
    rows = tshark(folder / "alb-internet.pcapng", f"ip.src == {alb} && tls.alert_message.desc",
                  "tls.alert_message.desc", keys=folder / "keylog.txt")
    assert [ALERTS[alert]] in rows, rows
    assert tshark(folder / "alb-internet.pcapng", f"ip.src == {alb} && tls.alert_message.desc == {ALERTS[alert]}",
                  "frame.number") == []  # encrypted without the key log


def test_with_tls12_the_certificate_crosses_in_the_clear(lab, verify):
    folder, _ = verify
    names = client_certificates(folder / "nlb-vpc.pcapng", lab.settings.nlb_vpc_ip)  # no key log
    assert any("alice" in n.split(",") for n in names), names
    assert not any("bob" in n.split(",") for n in names)  # bob's TLS 1.3 session: only with the key log


def test_the_python_client_on_this_machine_logs_its_keys_too(lab, verify):
    folder, _ = verify
    names = client_certificates(folder / "nlb-vpc.pcapng", lab.settings.nlb_vpc_ip, keys=folder / "keylog.txt")
    assert any("bob" in n.split(",") for n in names), names
    gateway = tshark(folder / "nlb-vpc.pcapng", "proxy.src.ipv4 == " + lab.settings.internet_gateway, "ip.dst")
    assert gateway  # from the host, Docker's port publishing makes the gateway the client address


# -- a capture with no traffic -------------------------------------------------------------
def test_a_capture_without_traffic_has_no_certificate_and_no_client_address(lab, lab_cli):
    proc = lab_cli("capture", "--design", "nlb", "--seconds", "2", "--keep", timeout=60)
    assert proc.returncode == 0, proc.stderr
    folder = newest(capture.kept_dir(lab.settings))
    try:
        keys = folder / "keylog.txt"
        assert keys.read_text() == ""  # no client ran
        vpc = folder / "nlb-vpc.pcapng"
        assert tshark(vpc, "tls.handshake.type == 1", "frame.number")  # the health checks did cross
        assert tshark(vpc, "tls.handshake.type == 11 && ip.src == " + lab.settings.nlb_vpc_ip, "frame.number",
                      keys=keys) == []
        assert tshark(vpc, "proxy.src.ipv4", "frame.number") == []  # checks send PROXY v2 LOCAL, no address
        assert tshark(folder / "nlb-internet.pcapng", "tcp", "frame.number") == []
        assert not capture.captures_dir(lab.settings).joinpath(folder.name).exists()  # --keep: elsewhere
    finally:
        shutil.rmtree(folder)
