"""The lab's one request path without Docker: curl's output parsed into Answers, the
TLS-alert reading, the credentials record, the container transport's command line (a fake
container), and the host transport against a small TLS server on 127.0.0.1."""

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lab import certs, keylog, load
from lab.answer import Answer
from lab.client import MARK, Container, Host, command, parse_curl, request, request_many
from lab.credentials import Credentials
from lab.errors import CertsMissing, StackError
from lab.runtime_api import RuntimeAPI


def write_out(status, exit_code=0, seconds="0.0123", backend="", cookie=""):
    return f"\n{MARK} {status} {exit_code} {seconds} {backend} {cookie}\n"


def test_curl_output_for_several_urls_becomes_answers():
    out = ('{"backend":"web1","client_verify":"SUCCESS"}' + write_out(200, backend="web1", cookie="AWSALB=web1; Path=/")
           + "<html>\nline\n</html>" + write_out(503, backend="sorry")
           + write_out("000", 56, "0.002"))
    answers = parse_curl(out, source="203.0.113.9", argv=["curl"], error="alert unknown ca, errno 0", rc=56)
    assert [(a.status, a.backend, a.curl_exit) for a in answers] == [(200, "web1", 0), (503, "sorry", 0), (0, "", 56)]
    assert answers[0].json["client_verify"] == "SUCCESS" == answers[0].client_verify
    assert answers[0].set_cookie == "AWSALB=web1; Path=/"
    assert answers[0].ok and not answers[0].sorry and answers[0].seconds == 0.0123
    assert answers[1].body == "<html>\nline\n</html>" and answers[1].sorry and not answers[1].ok
    assert answers[2].body == "" and answers[2].handshake_failed and answers[2].alert == "unknown ca"
    assert {a.source for a in answers} == {"203.0.113.9"}


def test_a_write_out_line_still_arriving_is_left_for_later():
    streamed = write_out(200, backend="web2") + f"\n{MARK} 200 0 0.01 we"
    (answer,) = parse_curl(streamed)
    assert answer.backend == "web2"
    assert len(parse_curl(streamed + "b1 \n")) == 2


def test_the_backend_comes_from_the_header_else_the_body():
    assert Answer(200, {"backend": "web2"}).backend == "web2"
    assert Answer(200, {"backend": "web2"}, {"x-backend": "web1"}).backend == "web1"
    assert Answer(200, "text").backend == ""


def test_stick_table_parsing(monkeypatch):
    text = ("# table: web, type: ip, size:1048576, used:2\n"
            "0x55: key=203.0.113.1 use=0 exp=1793180 server_id=1 server_key=web1\n"
            "0x56: key=203.0.113.100 use=0 exp=1793180 server_id=2 server_key=web2\n\n")
    api = RuntimeAPI("/nonexistent/admin.sock")
    monkeypatch.setattr(api, "command", lambda line: text)
    assert api.stick_table() == {"203.0.113.1": "web1", "203.0.113.100": "web2"}


# Why there was no HTTP answer, as curl prints it and as Python's ssl names it: only the
# server's alerts are a refusal in the handshake.
FAILURES = [
    pytest.param("curl: (56) OpenSSL SSL_read: OpenSSL/3.0.22: error:0A000418:SSL routines::tlsv1 alert unknown ca, "
                 "errno 0", 56, "unknown ca", id="curl-tls1.2-unknown-ca"),
    pytest.param("curl: (56) OpenSSL SSL_read: OpenSSL/3.0.22: error:0A00045C:SSL routines::tlsv13 alert certificate "
                 "required, errno 0", 56, "certificate required", id="curl-tls1.3-certificate-required"),
    pytest.param("curl: (35) OpenSSL/3.0.22: error:0A000414:SSL routines::sslv3 alert certificate revoked", 35,
                 "certificate revoked", id="curl-revoked"),
    pytest.param("curl: (58) unable to set private key file: '/certs/clients/x.key' type PEM", 58, "",
                 id="curl-client-side"),
    pytest.param("curl: (7) Failed to connect to www.lab.test port 8451 after 0 ms: Couldn't connect to server", 7,
                 "", id="curl-refused"),
    pytest.param("curl: (56) Recv failure: Connection reset by peer", 56, "", id="curl-reset"),
    pytest.param("TLSV1_ALERT_PROTOCOL_VERSION", None, "protocol version", id="ssl-protocol-version"),
    pytest.param("TLSV13_ALERT_CERTIFICATE_REQUIRED", None, "certificate required", id="ssl-certificate-required"),
    pytest.param("CERTIFICATE_VERIFY_FAILED", None, "", id="ssl-server-not-trusted"),
    pytest.param("client-refused: KEY_VALUES_MISMATCH", None, "", id="ssl-client-refused"),
    pytest.param("ConnectionRefusedError", None, "", id="ssl-refused"),
]


@pytest.mark.parametrize("error, curl_exit, alert", FAILURES)
def test_a_refusal_is_a_tls_alert_from_the_server(error, curl_exit, alert):
    answer = Answer(error=error, curl_exit=curl_exit)
    assert answer.alert == alert
    assert answer.handshake_failed == bool(alert)
    assert answer.verdict == error and not answer.ok
    with pytest.raises(StackError, match="no HTTP answer|curl exited"):
        answer.served()


def test_credentials_know_both_layouts(tmp_path):
    alice = Credentials(tmp_path, "alice")
    assert (alice.cert_path, alice.key_path, alice.ca_path) == (
        tmp_path / "clients" / "alice.crt", tmp_path / "clients" / "alice.key", tmp_path / "ca.pem")
    assert alice.curl_container_args() == ["--cacert", "/certs/ca.pem", "--cert", "/certs/clients/alice.crt",
                                           "--key", "/certs/clients/alice.key"]
    assert Credentials(tmp_path, None).curl_container_args() == ["--cacert", "/certs/ca.pem"]
    assert Credentials(tmp_path, None).requests_args() == {"verify": str(tmp_path / "ca.pem")}
    with pytest.raises(ValueError, match="host-only"):
        Credentials(tmp_path, None, cert=tmp_path / "x.crt", key=tmp_path / "x.key").curl_container_args()
    with pytest.raises(CertsMissing, match=r"ca.pem is missing: run `lab certs`"):
        alice.check()


class FakeBox:
    """A client container that prints what curl would have."""

    def __init__(self, out="", err="", rc=0, stream=()):
        self.out, self.err, self.rc, self.stream, self.argvs, self.envs = out, err, rc, list(stream), [], []

    def exec_split(self, argv, env=None):
        self.argvs.append(argv)
        self.envs.append(env)
        return self.rc, self.out, self.err

    def exec_stream(self, argv):
        self.argvs.append(argv)
        yield from self.stream


def test_the_container_transport_builds_one_curl_command():
    box = FakeBox(out='{"backend":"web1"}' + write_out(200, backend="web1"))
    answer = request(Container(box), "bob", port=8451, address="198.51.100.10", source="203.0.113.7",
                     cookie="AWSALB=web1", headers={"X-Forwarded-For": "6.6.6.6"}, timeout=4)
    (argv,) = box.argvs
    assert argv[:4] == ["curl", "-sS", "--max-time", "4"]
    text = " ".join(argv)
    for part in ("--cert /certs/clients/bob.crt --key /certs/clients/bob.key", "-H Connection: close",
                 "-H Cookie: AWSALB=web1", "-H X-Forwarded-For: 6.6.6.6", "--interface 203.0.113.7",
                 "--resolve www.lab.test:8451:198.51.100.10"):
        assert part in text, part
    assert argv[-1] == "https://www.lab.test:8451/whoami"
    assert (answer.status, answer.backend, answer.argv, answer.source) == (200, "web1", argv, "203.0.113.7")
    assert "-w" not in command(Container(box), "bob")  # what a person types has no --write-out


def test_answers_curl_never_gave_are_failures_not_missing():
    box = FakeBox(out='{"backend":"web1"}' + write_out(200, backend="web1"), err="curl: (28) timed out", rc=28)
    answers = request_many(Container(box), "alice", count=3)
    assert [a.status for a in answers] == [200, 0, 0]
    assert [a.curl_exit for a in answers] == [0, 28, 28] and answers[2].error == "curl: (28) timed out"
    assert box.argvs[0][-3:] == ["https://www.lab.test/whoami"] * 3


def test_a_load_run_streams_answers_and_tells_when_a_source_is_served():
    lines = [write_out(503, backend="sorry"), write_out(200, seconds="0.2", backend="web1"),
             write_out("000", 28, "3.0")]
    box = FakeBox(stream=lines)
    told = []
    answers = load.run_load(Container(box), ["203.0.113.5"], rate=3, duration=1, on_first=told.append)
    assert told == ["203.0.113.5"]
    assert [(a.status, a.curl_exit) for a in answers] == [(503, 0), (200, 0), (0, 28)]
    argv = box.argvs[0]
    assert argv[:4] == ["timeout", "14", "stdbuf", "-oL"] and "--rate" in argv and argv.count("/dev/null") == 3
    summary = load.summarize(answers)
    assert (summary["requests"], summary["served"], summary["sorry_page"], summary["failed"]) == (3, 1, 1, 1)
    assert summary["failed_by_kind"] == {"curl exit 28": 1}
    assert summary["path_per_source"] == {"203.0.113.5": ["sorry", "web1"]}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("certs")
    certs.ensure_pki(root)
    return root


@pytest.fixture(scope="module")
def tls_server(pki):
    """HTTPS on 127.0.0.1 with the lab's server certificate, asking for a client certificate
    from the lab CA (required or optional), answering like the backends' /whoami."""
    lay = certs.Layout(pki)

    class Whoami(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            peer = self.connection.getpeercert() or {}
            subject = ",".join(f"{k}={v}" for rdn in peer.get("subject", ()) for k, v in rdn)
            body = json.dumps({"backend": "web1", "path": self.path, "host": self.headers["Host"],
                               "connection": self.headers["Connection"], "cookie": self.headers["Cookie"],
                               "client_subject": subject, "resumed": self.connection.session_reused}).encode()
            self.send_response(200)
            self.send_header("X-Backend", "web1")
            self.send_header("Set-Cookie", "AWSALB=web1; Path=/")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    servers = {}
    for mode in (ssl.CERT_REQUIRED, ssl.CERT_OPTIONAL):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(lay.server_cert, lay.server_key)
        ctx.load_verify_locations(lay.ca_cert)
        ctx.verify_mode = mode
        server = ThreadingHTTPServer(("127.0.0.1", 0), Whoami)
        server.handle_error = lambda *args: None  # refused handshakes are the point
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[mode] = server
    yield {"required": servers[ssl.CERT_REQUIRED].server_address[1],
           "optional": servers[ssl.CERT_OPTIONAL].server_address[1]}
    for server in servers.values():
        server.shutdown()
        server.server_close()


def test_the_host_transport_presents_the_certificate_and_reads_the_answer(pki, tls_server):
    answer = request(Host(pki), "alice", port=tls_server["required"], path="/whoami?x=1", cookie="AWSALB=web2")
    assert answer.status == 200 and answer.ok, answer
    assert "alice" in answer.json["client_subject"]
    assert (answer.json["path"], answer.json["connection"], answer.json["cookie"]) == ("/whoami?x=1", "close",
                                                                                       "AWSALB=web2")
    assert answer.backend == "web1" and answer.set_cookie == "AWSALB=web1; Path=/"
    assert answer.curl_exit is None and answer.seconds > 0
    assert answer.argv[:2] == ["curl", "-sS"] and str(Credentials(pki).cert_path) in answer.argv


def test_the_host_transport_names_a_refusal_in_the_handshake(pki, tls_server):
    # TLS 1.2: the refusal comes inside the handshake (with 1.3 it races this little server's close)
    refused = request(Host(pki), None, port=tls_server["required"], tls_version="TLSv1_2")
    assert refused.status == 0 and refused.handshake_failed, refused.error
    assert (refused.error, refused.alert) == ("SSLV3_ALERT_HANDSHAKE_FAILURE", "handshake failure")


def test_the_host_transport_says_when_the_client_itself_refuses(pki, tls_server, tmp_path):
    lay = certs.Layout(pki)
    mismatched = Credentials(pki, None, cert=lay.client_cert("alice"), key=lay.client_key("bob"))
    answer = request(Host(pki), mismatched, port=tls_server["optional"])
    assert (answer.status, answer.verdict) == (0, "client-refused: KEY_VALUES_MISMATCH")
    assert answer.client_refused and not answer.handshake_failed


def test_the_host_transport_checks_the_server_certificate(pki, tls_server, tmp_path):
    other_ca = Credentials(pki, "alice", ca=certs.Layout(pki).rogue_cert)
    answer = request(Host(pki), other_ca, port=tls_server["optional"])
    assert (answer.status, answer.error) == (0, "CERTIFICATE_VERIFY_FAILED")


@pytest.mark.parametrize("tls_version", ["TLSv1_2", "TLSv1_3"])
def test_requests_in_a_row_resume_the_first_session(pki, tls_server, tls_version):
    answers = request_many(Host(pki), "bob", count=3, port=tls_server["optional"], tls_version=tls_version)
    assert [a.json["resumed"] for a in answers] == [False, True, True]
    assert {a.json["client_subject"].count("bob") for a in answers} == {1}



# Key logging (lab/keylog.py): off unless `lab capture` records, then both transports log.
def test_no_tls_secrets_are_written_unless_a_capture_records(pki, tls_server, tmp_path, monkeypatch):
    monkeypatch.delenv("SSLKEYLOGFILE", raising=False)
    box = FakeBox(out="{}" + write_out(200))
    request(Container(box), "alice")
    assert box.envs == [None] and keylog.active() is None
    answer = request(Host(pki), "alice", port=tls_server["required"])
    assert answer.status == 200 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tls_version", ["TLSv1_2", "TLSv1_3"])
def test_while_recording_both_transports_log_their_tls_secrets(pki, tls_server, tmp_path, tls_version):
    log = keylog.KeyLog(tmp_path / "keylog.txt")
    box = FakeBox(out="{}" + write_out(200))
    with keylog.recording(log):
        request(Container(box), "alice")
        answer = request(Host(pki), "alice", port=tls_server["required"], tls_version=tls_version)
    assert answer.status == 200
    assert box.envs == [{"SSLKEYLOGFILE": "/tmp/lab-capture/keylog.txt",
                         "OPENSSL_CONF": "/tmp/lab-capture/openssl.cnf"}]
    labels = {line.split()[0] for line in log.host.read_text().splitlines() if line and line[0] != "#"}
    expected = {"CLIENT_RANDOM"} if tls_version == "TLSv1_2" else {
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"}
    assert expected <= labels, labels
    assert keylog.active() is None  # off again after the block
