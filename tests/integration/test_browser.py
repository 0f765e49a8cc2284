"""Client certificates in a real browser: Debian's headless Chromium, with a throwaway NSS store
holding alice's PKCS#12 bundle (as `lab certs --p12` writes it) and the AutoSelectCertificateForUrls
policy choosing it, loads /whoami through each design. What it rendered is read from the page
(DevTools), whether it sent a certificate and which TLS alert it got from its NetLog. A screenshot
per case goes to browser-<case>.png in the `screenshots` folder (LAB_SCREENSHOTS=docs/images
refreshes the README's).

Needs /usr/bin/chromium and libnss3-tools (.ci/run installs them), and root: Linux Chromium reads
policies only from /etc/chromium/policies/managed/ (the file written there is removed after).
"""


import pytest
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from cryptography.x509.oid import NameOID

from lab import certs, nssdb, p12, pemfile, pki
from lab.browser import Chromium, tls_log

DESIGNS = ("nlb", "alb", "alb-mtls-verify")
ALICE = "CN=alice,OU=clients,O=mTLS Lab"
# A subject a hostile client chooses: unescaped, this would be an <img> whose onerror runs
# (nginx's RFC 2253 backslashes do not stop it) and sets the page title.
HOSTILE_CN = "<img src=x onerror=document.title=1337 >"


@pytest.fixture(scope="module")
def homes(lab, tmp_path_factory):
    """HOMEs for Chromium: alice's bundle imported, or no certificate; both trust the lab CA."""
    tmp = tmp_path_factory.mktemp("browser")
    lay = certs.Layout(lab.certs_dir)
    bundles = p12.write_bundles(lab.certs_dir, "browser-test", names=("alice",))
    return {
        "alice": nssdb.make_home(tmp / "alice", ca=lay.ca_cert, p12=bundles.files[0], password="browser-test"),
        None: nssdb.make_home(tmp / "none", ca=lay.ca_cert),
    }


@pytest.fixture(scope="module")
def policy(lab):
    """The policy picks the lab CA's certificate for the designs' URLs (and nothing else)."""
    urls = [lab.url("", design).rstrip("/") for design in DESIGNS]
    ca = pemfile.load_cert(certs.Layout(lab.certs_dir).ca_cert)
    issuer_cn = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    with nssdb.auto_select(urls, issuer_cn=issuer_cn) as path:
        yield path


def visit(home, url, tmp_path):
    """Load ``url`` in a fresh headless Chromium; returns (Page, TlsLog)."""
    net_log = tmp_path / "netlog.json"
    with Chromium(home, net_log=net_log) as browser:
        page = browser.open(url)
    return page, tls_log(net_log)


# (design, certificate in the browser, what the browser shows, certificates it sent per request
# for one, the TLS alert it got). Each allowed case has its refusal beside it: the NLB without a
# certificate; alb-mtls-verify without one. The ALB case is the refusal whose control is the
# first row: the same browser, the same certificate, let in through the NLB.
CASES = [
    pytest.param("nlb", "alice", "allowed", [1], [], "tls", id="nlb-alice"),
    pytest.param("nlb", None, "refused", [0], [], "tls", id="nlb-no-certificate"),
    # The ALB terminates TLS without asking for a certificate (none leaves the browser), then
    # opens its own TLS to the target, which asks for one and gets none: the target refuses.
    pytest.param("alb", "alice", "refused", [], [], "tls", id="alb-alice"),
    pytest.param("alb-mtls-verify", "alice", "allowed", [1], [], "alb-headers", id="alb-mtls-verify-alice"),
    # The ALB itself refuses, in the handshake: no page from any backend.
    pytest.param("alb-mtls-verify", None, "tls-error", [0], ["certificate_required"], None,
                 id="alb-mtls-verify-no-certificate"),
]


@pytest.mark.parametrize("design, client, shown, sent, alerts, listener", CASES)
def test_browser_through_each_design(lab, homes, policy, tmp_path, request, screenshots, design, client, shown, sent,
                                     alerts, listener):
    page, log = visit(homes[client], lab.url("/whoami", design), tmp_path)
    page.save_screenshot(screenshots / f"browser-{request.node.callspec.id}.png")
    assert (log.certs_sent, log.alerts) == (sent, alerts)
    if shown == "allowed":
        assert page.error == "" and page.title.startswith("whoami: web")
        assert (page.text("client_verify"), page.text("client_subject")) == ("SUCCESS", ALICE)
        assert page.text("listener") == listener and page.text("backend") in ("web1", "web2")
    elif shown == "refused":  # a backend answered, and refused: it saw no certificate
        assert page.error == "" and page.title.startswith("refused: web")
        assert (page.text("client_verify"), page.text("listener")) == ("NONE", listener)
    else:
        assert page.error.startswith("net::ERR_") and "backend" not in page.texts, page.body_text


def test_a_hostile_subject_renders_as_text(lab, tmp_path, policy, screenshots):
    lay = certs.Layout(lab.certs_dir)
    ca = pki.CA.from_pem(lay.ca_cert.read_bytes(), lay.ca_key.read_bytes())
    leaf = ca.issue_cert(HOSTILE_CN)
    bundle = tmp_path / "hostile.p12"
    bundle.write_bytes(pkcs12.serialize_key_and_certificates(
        b"hostile", leaf.private_key, leaf.cert, None,
        BestAvailableEncryption(b"pw")))
    home = nssdb.make_home(tmp_path / "home", ca=lay.ca_cert, p12=bundle, password="pw")
    page, log = visit(home, lab.url("/whoami"), tmp_path)
    page.save_screenshot(screenshots / "browser-hostile-subject.png")
    assert log.certs_sent == [1] and page.text("client_verify") == "SUCCESS"
    assert "onerror=document.title=1337" in page.text("client_subject")  # shown, as text
    assert page.title == "whoami: web1" or page.title == "whoami: web2"  # the onerror never ran
    assert "<img" not in page.html
