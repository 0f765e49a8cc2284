"""/whoami for browsers: a small HTML page when the client asks for HTML, JSON otherwise (curl,
requests), with the same facts; what comes from the certificate is escaped in the page."""

from html.parser import HTMLParser

import pytest
import requests

from lab import certs, pki

DESIGNS = ["nlb", "alb-mtls-verify", "alb-mtls-passthrough", "nlb-tls-mtls"]
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # Chromium's
# Unescaped, an <img> whose onerror runs (nginx's RFC 2253 backslashes do not stop it).
HOSTILE_CN = "<img src=x onerror=alert(1) >"
# What differs from one answer to the next, whatever the format.
PER_ANSWER = {"backend", "tls_session_reused"}


class _Cells(HTMLParser):
    """The text of every <td id=...> of a page."""

    def __init__(self):
        super().__init__()
        self.cells, self._open = {}, None

    def handle_starttag(self, tag, attrs):
        self._open = dict(attrs).get("id") if tag == "td" else None
        if self._open:
            self.cells[self._open] = ""

    def handle_endtag(self, tag):
        self._open = None

    def handle_data(self, data):
        if self._open:
            self.cells[self._open] += data


def cells(html: str) -> dict:
    parser = _Cells()
    parser.feed(html)
    return parser.cells


@pytest.mark.parametrize("design", DESIGNS)
def test_json_by_default_the_same_facts_as_a_page_for_browsers(lab, lab_client, design):
    session = lab_client("alice")
    as_json = session.get(lab.url("/whoami", design))
    as_page = session.get(lab.url("/whoami", design), headers={"Accept": BROWSER_ACCEPT})
    assert as_json.status_code == as_page.status_code == 200
    assert as_json.headers["Content-Type"] == "application/json"
    assert as_page.headers["Content-Type"] == "text/html; charset=utf-8"
    facts, shown = as_json.json(), cells(as_page.text)
    assert facts["client_subject" if design != "nlb-tls-mtls" else "client_verify"]  # not empty
    assert shown.keys() == facts.keys()
    assert {k: v for k, v in shown.items() if k not in PER_ANSWER} == \
        {k: v for k, v in facts.items() if k not in PER_ANSWER}
    # negative control: asking for JSON explicitly is not asking for HTML
    assert session.get(lab.url("/whoami", design), headers={"Accept": "application/json"}).json() == facts


def test_a_refusal_is_a_page_too_for_browsers(lab, lab_client):
    refused = lab_client(None).get(lab.url("/whoami"), headers={"Accept": BROWSER_ACCEPT})
    assert refused.status_code == 400 and refused.headers["Content-Type"].startswith("text/html")
    assert cells(refused.text)["client_verify"] == "NONE"
    assert lab_client(None).get(lab.url("/whoami")).json()["client_verify"] == "NONE"  # JSON otherwise


@pytest.fixture(scope="module")
def hostile(lab, tmp_path_factory):
    """A certificate from the lab CA whose subject is markup: (cert path, key path)."""
    lay = certs.Layout(lab.certs_dir)
    ca = pki.CA.from_pem(lay.ca_cert.read_bytes(), lay.ca_key.read_bytes())
    leaf = ca.issue_cert(HOSTILE_CN)
    folder = tmp_path_factory.mktemp("hostile")
    leaf.cert_pem.write_to_path(folder / "hostile.crt")
    leaf.private_key_pem.write_to_path(folder / "hostile.key")
    return folder / "hostile.crt", folder / "hostile.key"


@pytest.mark.parametrize("design", ["nlb", "alb-mtls-verify", "alb-mtls-passthrough"])
def test_a_hostile_subject_is_escaped_in_the_page(lab, hostile, design):
    with requests.Session() as session:
        session.trust_env = False
        session.verify, session.cert = str(certs.Layout(lab.certs_dir).ca_cert), tuple(map(str, hostile))
        page = session.get(lab.url("/whoami", design), headers={"Accept": BROWSER_ACCEPT}, timeout=10)
        # (as text: nginx's backslashes, "\\<", are not valid JSON escapes)
        facts = session.get(lab.url("/whoami", design), timeout=10).text
    assert page.status_code == 200 and '"client_verify":"SUCCESS"' in facts
    assert "<img src=x onerror=alert(1)" in facts  # the subject really is markup...
    assert "<img" not in page.text and "&lt;img src=x onerror=alert(1)" in page.text  # ...shown as text
    assert "<img src=x onerror=alert(1)" in cells(page.text)["client_subject"]
