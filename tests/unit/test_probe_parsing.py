"""Parsing what real clients print (curl's -w output, HAProxy's stick table)."""

import pytest

from lab import compare, probe
from lab.runtime_api import RuntimeAPI


def test_split_curl_output():
    out = '{"backend":"web1"}\n\n200\n<html>\nline\n</html>\n503\n'
    replies = probe._split_curl(out)
    assert [r.status for r in replies] == [200, 503]
    assert replies[0].backend == "web1"
    assert replies[1].body == "<html>\nline\n</html>"


def test_stick_table_parsing(monkeypatch):
    text = ("# table: web, type: ip, size:1048576, used:2\n"
            "0x55: key=203.0.113.1 use=0 exp=1793180 server_id=1 server_key=web1\n"
            "0x56: key=203.0.113.100 use=0 exp=1793180 server_id=2 server_key=web2\n\n")
    api = RuntimeAPI("/nonexistent/admin.sock")
    monkeypatch.setattr(api, "command", lambda line: text)
    assert api.stick_table() == {"203.0.113.1": "web1", "203.0.113.100": "web2"}


# What curl printed on stderr when a server ended the handshake (TLS 1.2 and 1.3), and when
# the client itself could not start: only the first two are the server's refusal.
CURL_STDERR = [
    ("curl: (56) OpenSSL SSL_read: OpenSSL/3.0.22: error:0A000418:SSL routines::tlsv1 alert unknown ca, errno 0",
     "unknown ca"),
    ("curl: (56) OpenSSL SSL_read: OpenSSL/3.0.22: error:0A00045C:SSL routines::tlsv13 alert certificate "
     "required, errno 0", "certificate required"),
    ("curl: (35) OpenSSL/3.0.22: error:0A000414:SSL routines::sslv3 alert certificate revoked", "certificate revoked"),
    ("curl: (58) unable to set private key file: '/certs/clients/x.key' type PEM", ""),
    ("curl: (7) Failed to connect to www.lab.test port 8451 after 0 ms: Couldn't connect to server", ""),
    ("curl: (56) Recv failure: Connection reset by peer", ""),
]


@pytest.mark.parametrize("stderr, alert", CURL_STDERR)
def test_a_refusal_is_a_tls_alert_from_the_server(stderr, alert):
    code = int(stderr.split("(", 1)[1].split(")", 1)[0])
    answer = compare.Answer([], 0, code, "", "", "", stderr=stderr)
    assert answer.alert == alert
    assert answer.handshake_failed == bool(alert)


def test_several_answers_from_one_curl_process():
    mark = compare.MARK
    out = (f'{{"backend":"web1","client_verify":"SUCCESS"}}\n\n{mark} 200 0 web1 AWSALB=web1; Path=/\n'
           f'{{"backend":"web2"}}\n\n{mark} 400 0 web2 \n'
           f"\n{mark} 000 56  \n")
    answers = compare._answers(["curl"], 56, out, "alert unknown ca, errno 0")
    assert [(a.status, a.backend, a.curl_exit) for a in answers] == [(200, "web1", 0), (400, "web2", 0), (0, "", 56)]
    assert answers[0].json["client_verify"] == "SUCCESS" and answers[0].set_cookie.startswith("AWSALB=web1")
    assert answers[2].body == ""
