"""Parsing what real clients print (curl's -w output, HAProxy's stick table)."""

from lab import probe


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
    api = probe.RuntimeAPI("/nonexistent/admin.sock")
    monkeypatch.setattr(api, "command", lambda line: text)
    assert api.stick_table() == {"203.0.113.1": "web1", "203.0.113.100": "web2"}
