"""The browser helpers without a browser: the policy file's shape and lifetime, NetLog reading
(the real browser runs in tests/integration/test_browser.py)."""

import base64
import json

import pytest

from lab import nssdb
from lab.browser import BrowserError, tls_log


def test_the_policy_names_each_url_and_the_certificate_and_is_removed_after(tmp_path):
    with nssdb.auto_select(["https://localhost:8443"], issuer_cn="mTLS Lab Root CA", subject_cn="alice",
                           folder=tmp_path) as path:
        (rule,) = json.loads(path.read_text())["AutoSelectCertificateForUrls"]
        assert json.loads(rule) == {"pattern": "https://localhost:8443",
                                    "filter": {"ISSUER": {"CN": "mTLS Lab Root CA"}, "SUBJECT": {"CN": "alice"}}}
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_a_policy_folder_that_cannot_be_written_names_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BrowserError, match="run as root"):
        with nssdb.auto_select(["https://localhost:1"], issuer_cn="x", folder=blocker / "managed"):
            pass


def _netlog(tmp_path, *events):
    names = {"SSL_CLIENT_CERT_PROVIDED": 1, "SSL_ALERT_RECEIVED": 2, "SSL_ALERT_SENT": 3}
    path = tmp_path / "netlog.json"
    path.write_text(json.dumps({"constants": {"logEventTypes": names},
                                "events": [{"type": names[n], "params": p} for n, p in events]}))
    return path


def test_tls_log_reads_certificates_sent_and_fatal_alerts_only(tmp_path):
    alert = lambda level, code: {"bytes": base64.b64encode(bytes([level, code])).decode()}  # noqa: E731
    log = tls_log(_netlog(tmp_path, ("SSL_CLIENT_CERT_PROVIDED", {"cert_count": 0}),
                          ("SSL_ALERT_RECEIVED", alert(1, 0)),  # close_notify, a warning: not a refusal
                          ("SSL_ALERT_RECEIVED", alert(2, 116)), ("SSL_ALERT_SENT", alert(2, 48))))
    assert (log.certs_sent, log.alerts) == ([0], ["certificate_required"])


def test_an_unfinished_netlog_says_so(tmp_path):
    path = tmp_path / "netlog.json"
    path.write_text('{"constants": {}, "events": [')
    with pytest.raises(BrowserError, match="close the browser first"):
        tls_log(path)
