"""Connection logs as AWS writes them (lab/connlog.py): every client of the certificate
matrix through the listeners where the load balancer ends mutual TLS, exactly one line per
connection in build/<project>/logs/<lb>/connection.log, AWS's fields in AWS's order and
AWS's tls_verify_status codes (/work/research/alb-mtls.md section 7)."""

import json
import re
import time

import pytest

from lab import cfconnlog, connlog
from lab.client import Listener
from lab.designs import DESIGNS

# client -> (tls_verify_status, subject CN or None without a certificate)
MATRIX = {
    "alice": ("Success", "alice"),
    "carol": ("Success", "carol"),
    "rogue-ca": ("Failed:ClientCertUntrusted", "rogue-ca"),
    "revoked": ("Failed:ClientCertCrlHit", "revoked"),
    "expired": ("Failed:ClientCertExpired", "expired"),
    None: ("Failed:UnmappedConnectionError", None),
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
VALIDITY = re.compile(r"^NotBefore=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ;NotAfter=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module")
def listeners(lab, from_client):
    return {name: Listener(from_client, name, lab.settings.lb_ips(DESIGNS[name].service)[0],
                           DESIGNS[name].container_port) for name in DESIGNS}


def new_lines(lab, design, source, before, want=1, wait=3.0):
    """The records from ``source`` on ``design``'s listener written after ``before`` lines."""
    deadline = time.monotonic() + wait
    while True:
        mine = [r for r in connlog.read(lab.settings.build_dir, design)[before:] if r["client_ip"] == source]
        if len(mine) >= want or time.monotonic() > deadline:
            time.sleep(0.3)  # a second line, if one were coming, has arrived by now
            return [r for r in connlog.read(lab.settings.build_dir, design)[before:] if r["client_ip"] == source]
        time.sleep(0.1)


@pytest.mark.parametrize("design", ["alb-mtls-verify", "nlb-tls-mtls"])
@pytest.mark.parametrize("client", list(MATRIX), ids=lambda c: c or "no-certificate")
def test_one_line_per_connection_in_aws_format(lab, listeners, design, client):
    status, cn = MATRIX[client]
    source = lab.settings.client_pool.users[list(MATRIX).index(client)]
    before = len(connlog.read(lab.settings.build_dir, design))
    answer = listeners[design].get(client, source)
    assert (answer.status == 200) == (status == "Success"), answer
    lines = new_lines(lab, design, source, before)
    assert len(lines) == 1, lines
    record = lines[0]
    assert len(connlog.parse(record["line"])) == 15 == len(record["line"].split(" ")) - (
        record["leaf_client_cert_subject"].count(" "))
    assert list(connlog.parse(record["line"])) == list(connlog.FIELDS)
    assert TIMESTAMP.match(record["timestamp"]), record
    assert record["client_port"].isdigit() and record["listener_port"] == str(DESIGNS[design].container_port)
    assert record["tls_protocol"] in ("TLSv1.2", "TLSv1.3") and record["tls_cipher"] != "-"
    assert record["tls_verify_status"] == status
    if status == "Success":
        assert re.fullmatch(r"\d+\.\d{3}", record["tls_handshake_latency"]), record
    else:
        assert record["tls_handshake_latency"] == "-"
    if cn:
        assert record["leaf_client_cert_subject"].startswith(f'"CN={cn},'), record
        assert VALIDITY.match(record["leaf_client_cert_validity"]), record
        assert re.fullmatch(r"[0-9A-F]+", record["leaf_client_cert_serial_number"]), record
    else:
        assert (record["leaf_client_cert_subject"], record["leaf_client_cert_validity"],
                record["leaf_client_cert_serial_number"]) == ("-", "-", "-")
    assert re.fullmatch(r"TID_[0-9a-f]{32}", record["conn_trace_id"])
    assert record["tls_keyexchange"] != "-"
    assert re.fullmatch(r"(app|net)/[a-z-]+/[0-9a-f]{16}", record["elb"])
    assert record["ip_address"] == lab.settings.lb_ips(DESIGNS[design].service)[0]


def test_a_kept_alive_connection_has_one_line_and_every_connection_its_own(lab, client_box):
    """AWS: "Persistent connections have multiple requests ... a single entry in the connection
    log". Three requests from one curl: one line for each connection curl says it opened."""
    design, source = "alb-mtls-verify", lab.settings.client_pool.users[0]
    address, url = lab.settings.lb_ips("alb")[0], f"https://www.lab.test:{DESIGNS[design].container_port}/whoami"
    before = len(connlog.read(lab.settings.build_dir, design))
    curl = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n", "--cacert", "/certs/ca.pem",
            "--cert", "/certs/clients/alice.crt", "--key", "/certs/clients/alice.key", "--interface", source,
            "--resolve", f"www.lab.test:{DESIGNS[design].container_port}:{address}"]
    out = ""
    for urls in ([url] * 3, [url]):  # a second curl process: a connection of its own
        rc, more, err = client_box.exec_split(curl + urls)
        assert rc == 0, err
        out += more
    rows = [line.split() for line in out.splitlines() if re.fullmatch(r"\d{3} \d+", line)]  # not the bodies
    assert [r[0] for r in rows] == ["200"] * 4
    connections = sum(int(r[1]) for r in rows)
    assert 2 <= connections <= 4  # the second process's connection is new whatever the first did
    lines = new_lines(lab, design, source, before, want=connections)
    assert len(lines) == connections, (rows, lines)
    assert len({r["conn_trace_id"] for r in lines}) == len({r["client_port"] for r in lines}) == connections


def test_the_expired_certificate_is_success_where_the_load_balancer_does_not_verify(lab, listeners):
    """Passthrough: the ALB asks for the certificate and logs it, the targets verify it."""
    design, source = "alb-mtls-passthrough", lab.settings.client_pool.users[1]
    before = len(connlog.read(lab.settings.build_dir, design))
    assert listeners[design].get("expired", source).status != 200
    (record,) = new_lines(lab, design, source, before)
    assert record["tls_verify_status"] == "Success"
    assert record["leaf_client_cert_subject"].startswith('"CN=expired,')


def test_listeners_without_mutual_tls_at_the_load_balancer_write_none(lab, listeners):
    """Negative control: the ALB with mutual TLS off and the passthrough NLB log nothing here."""
    source = lab.settings.client_pool.users[2]
    logs = [connlog.path(lab.settings.build_dir, s) for s in connlog.services()]
    sizes = [p.stat().st_size for p in logs]
    for design in ("alb", "nlb"):
        listeners[design].get("alice", source)
    time.sleep(1)
    fresh = [line for p, size in zip(logs, sizes) for line in p.read_text()[size:].splitlines()]
    assert not [line for line in fresh if f" {source} " in line], fresh
    assert set(connlog.services()) == {"alb", "nlb-tls", "cloudfront"}


def test_lab_logs_connection_prints_the_lines(lab, lab_cli, listeners):
    listeners["nlb-tls-mtls"].get("alice", lab.settings.client_pool.users[3])
    time.sleep(0.5)
    out = lab_cli("logs", "--connection", "nlb-tls-mtls")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines and all(connlog.parse(line)["listener_port"] == "443" for line in lines)
    refused = lab_cli("logs", "--connection", "alb")
    assert refused.returncode == 1 and "keeps no connection log" in refused.stderr


# CloudFront's own connection log (lab/cfconnlog.py): its JSON objects, its field names and codes.
# client -> (connectionStatus in required mode, in optional mode)
CLOUDFRONT = {
    "alice": ("Success", "Success"),
    "expired": ("Failed:ClientCertExpired", "Failed:ClientCertExpired"),
    "rogue-ca": ("Failed:ClientCertUntrusted", "Failed:ClientCertUntrusted"),
    "no-client-eku": ("Failed:ClientCertIntentInvalid", "Failed:ClientCertIntentInvalid"),
    None: ("Failed:ClientCertMissing", "Success"),   # optional mode admits a viewer without one
}


@pytest.mark.parametrize("design", ["cloudfront-mtls", "cloudfront-mtls-optional"])
@pytest.mark.parametrize("client", list(CLOUDFRONT), ids=lambda c: c or "no-certificate")
def test_cloudfront_writes_its_own_format(lab, listeners, design, client):
    status = CLOUDFRONT[client][design.endswith("optional")]
    source = lab.settings.client_pool.users[5 + list(CLOUDFRONT).index(client) % 3]
    before = len(connlog.read(lab.settings.build_dir, design))
    listeners[design].get(client, source)
    lines = new_lines(lab, design, source, before)
    assert len(lines) == 1, lines
    record = lines[0]
    assert record["line"].startswith('{"eventTimestamp":"') and list(json.loads(record["line"])) == list(cfconnlog.FIELDS)
    assert record["connectionStatus"] == status
    assert record["distributionId"] == cfconnlog.distribution_id(lab.settings.project) + str(DESIGNS[design].container_port)
    assert record["clientPort"].isdigit() and record["tlsSni"] == "www.lab.test"
    assert (record["tlsHandshakeDuration"] != "-") == (status == "Success")
    if client:
        assert record["clientLeafCertSubject"] == f"O=mTLS Lab, OU=clients, CN={client}", record
        assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2})+", record["clientLeafCertSerialNumber"]), record
        assert VALIDITY.match(record["clientLeafCertValidity"]), record
    else:
        assert (record["clientLeafCertSubject"], record["clientLeafCertSerialNumber"]) == ("-", "-")
    # none of the ELB format's fields: each service writes its own
    assert "tls_verify_status" not in json.loads(record["line"])
