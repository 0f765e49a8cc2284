"""The ALB's mutual-TLS options (AWS's MutualAuthentication attributes and the header-renaming
listener attributes): read once in lab/settings.py, rendered into the ALB and the backends.
What they do end to end is in tests/integration/test_alb_options.py."""

import pytest

from lab import certs, crls, pemfile, render
from lab.errors import SettingsError
from lab.settings import Settings


def settings(tmp_path, **env):
    return Settings.from_env(env={"LAB_HOME": str(tmp_path), **env})


def frontend(cfg: str, name: str) -> str:
    return cfg.split(f"frontend {name}\n")[1].split("\nbackend ")[0]


def test_defaults_are_aws_defaults(tmp_path):
    s = settings(tmp_path)
    assert (s.alb_ignore_client_cert_expiry, s.alb_advertise_ca_names, s.alb_mtls_header_names) == (False, False, ())
    alb = render.haproxy_cfg(s, "alb")
    verify, chain = frontend(alb, "alb_mtls_verify"), frontend(alb, "alb_mtls_passthrough")
    # CA names are not advertised: the trust store verifies without being listed
    assert "verify required ca-verify-file /etc/lab/trust/alb-ca.pem crl-file" in verify
    assert not any(" ca-file " in line for line in alb.splitlines() if "bind " in line)
    assert "verify optional ca-verify-file /etc/lab/trust/ca.pem" in chain
    assert "crt-ignore-err" not in verify  # an expired certificate is refused
    assert "set-header X-Amzn-Mtls-Clientcert-Subject %[ssl_c_s_dn(,0,rfc2253)]" in verify


def test_advertising_ca_names_uses_ca_file_on_the_verify_listener_only(tmp_path):
    alb = render.haproxy_cfg(settings(tmp_path, LAB_ALB_ADVERTISE_CA_NAMES="on"), "alb")
    assert "verify required ca-file /etc/lab/trust/alb-ca.pem crl-file" in frontend(alb, "alb_mtls_verify")
    # passthrough has no trust store (AWS): nothing to advertise
    assert "ca-verify-file /etc/lab/trust/ca.pem" in frontend(alb, "alb_mtls_passthrough")


def test_ignoring_expiry_ignores_that_one_error_on_the_leaf(tmp_path):
    alb = render.haproxy_cfg(settings(tmp_path, LAB_ALB_IGNORE_CLIENT_CERT_EXPIRY="on"), "alb")
    verify = frontend(alb, "alb_mtls_verify")
    assert verify.count("crt-ignore-err X509_V_ERR_CERT_HAS_EXPIRED") == 1
    assert "ca-ignore-err" not in verify  # the CAs above it are checked as before
    assert "crt-ignore-err X509" not in frontend(alb, "alb_mtls_passthrough")


def test_renamed_headers_are_set_dropped_and_read_under_the_new_names(tmp_path):
    s = settings(tmp_path, LAB_ALB_MTLS_HEADER_NAMES=(
        "subject=X-Client-Subject, routing.http.request.x_amzn_mtls_clientcert_serial_number.header_name="
        "X-Client-Serial,clientcert=X-Client-Chain"))
    assert s.alb_mtls_header_names == (("chain", "X-Client-Chain"), ("serial", "X-Client-Serial"),
                                       ("subject", "X-Client-Subject"))
    alb = render.haproxy_cfg(s, "alb")
    verify = frontend(alb, "alb_mtls_verify")
    assert "set-header X-Client-Subject %[ssl_c_s_dn(,0,rfc2253)]" in verify
    assert "set-header X-Client-Serial %[ssl_c_serial,hex]" in verify
    assert "X-Amzn-Mtls-Clientcert-Subject" not in alb and "X-Amzn-Mtls-Clientcert-Serial" not in alb
    assert "set-header X-Amzn-Mtls-Clientcert-Issuer " in verify  # the others keep AWS's names
    assert "set-header X-Client-Chain -----BEGIN" in frontend(alb, "alb_mtls_passthrough")
    for name in ("X-Client-Subject", "X-Client-Serial", "X-Client-Chain"):  # a client's copy is dropped
        assert alb.count(f"http-request del-header {name}\n") == 4, name  # on each of the four listeners
    web = render.nginx_conf(s, "web1")
    assert 'map "$from_alb:$http_x_client_subject" $alb_headers_verify' in web
    assert "map $from_alb $alb_headers_serial { 1 $http_x_client_serial;" in web
    assert "map $from_alb $alb_chain { 1 $http_x_client_chain;" in web
    assert "$http_x_amzn_mtls_clientcert_subject" not in web
    assert "$http_x_amzn_mtls_clientcert_issuer" in web
    # CloudFront's names are its own
    assert "$http_cloudfront_viewer_cert_subject" in web


BAD = [
    pytest.param({"LAB_ALB_IGNORE_CLIENT_CERT_EXPIRY": "sometimes"},
                 r"LAB_ALB_IGNORE_CLIENT_CERT_EXPIRY='sometimes': use on or off", id="expiry-flag"),
    pytest.param({"LAB_ALB_ADVERTISE_CA_NAMES": "2"}, r"LAB_ALB_ADVERTISE_CA_NAMES='2': use on or off", id="ca-flag"),
    pytest.param({"LAB_ALB_MTLS_HEADER_NAMES": "cn=X-Client"},
                 r"'cn=X-Client' is not <attribute>=<header name>: use one of .*subject.*e\.g\.", id="unknown-key"),
    pytest.param({"LAB_ALB_MTLS_HEADER_NAMES": "subject"}, r"is not <attribute>=<header name>", id="no-name"),
    pytest.param({"LAB_ALB_MTLS_HEADER_NAMES": "x_amzn_tls_version=X-Tls"}, r"is not <attribute>=", id="tls-key"),
    pytest.param({"LAB_ALB_MTLS_HEADER_NAMES": "subject=X_Client"}, r"'X_Client' is not a header name .*no '_'",
                 id="underscore"),
    pytest.param({"LAB_ALB_MTLS_HEADER_NAMES": "subject=X Client"}, r"is not a header name", id="space"),
    pytest.param({"LAB_ALB_MTLS_HEADER_NAMES": "subject="}, r"'' is not a header name", id="empty"),
    pytest.param({"LAB_ALB_MTLS_HEADER_NAMES": "subject=X-" + "a" * 70}, r"at most 64", id="long"),
    pytest.param({"LAB_ALB_MTLS_HEADER_NAMES": "subject=X-Forwarded-For"}, r"not Host/Cookie/X-Forwarded-\*",
                 id="reserved"),
    pytest.param({"LAB_ALB_MTLS_HEADER_NAMES": "subject=X-Id,issuer=x-id"}, r"two headers the same name", id="dupe"),
    pytest.param({"LAB_ALB_MTLS_HEADER_NAMES": "subject=X-Amzn-Mtls-Clientcert-Issuer"},
                 r"two headers the same name", id="dupe-default"),
    pytest.param({"LAB_ALB_TRUST_STORE": "partner"}, r"LAB_ALB_TRUST_STORE='partner': use lab or lab\+partner",
                 id="trust-store"),
]


@pytest.mark.parametrize("env, message", BAD)
def test_bad_alb_options_name_the_fix_on_one_line(env, message):
    with pytest.raises(SettingsError, match=message) as exc:
        Settings.from_env(env=env)
    assert "\n" not in str(exc.value)


def test_good_flags_and_a_swap_pass():
    s = Settings.from_env(env={"LAB_ALB_IGNORE_CLIENT_CERT_EXPIRY": "on", "LAB_ALB_ADVERTISE_CA_NAMES": "yes",
                               "LAB_ALB_MTLS_HEADER_NAMES": "subject=X-Amzn-Mtls-Clientcert-Issuer,"
                                                            "issuer=X-Amzn-Mtls-Clientcert-Subject"})
    assert s.alb_ignore_client_cert_expiry and s.alb_advertise_ca_names
    assert dict(s.alb_mtls_header_names) == {"subject": "X-Amzn-Mtls-Clientcert-Issuer",
                                             "issuer": "X-Amzn-Mtls-Clientcert-Subject"}


def test_the_trust_store_holds_the_partner_ca_and_its_crl_only_when_asked(tmp_path):
    certs.ensure_pki(tmp_path / "certs")
    lay = certs.Layout(tmp_path / "certs")
    partner = pemfile.load_cert(lay.partner_cert)
    revoked = pemfile.load_cert(lay.client_cert("partner-revoked")).serial_number
    for store, cas in (("lab", ["mTLS Lab Root CA"]), ("lab+partner", ["mTLS Lab Root CA", "Partner Root CA"])):
        s = settings(tmp_path, LAB_ALB_TRUST_STORE=store, LAB_CERTS_DIR=str(tmp_path / "certs"))
        render.render(s, {})
        trust = s.build_dir / "trust"
        names = [c.subject.rfc4514_string().split("CN=")[1].split(",")[0]
                 for c in pemfile.load_chain(trust / "alb-ca.pem")]
        assert names == cas, store
        issuers = [c.issuer for c in crls.load_crls(trust / "alb-crl.pem")]
        assert (partner.subject in issuers) == (store == "lab+partner")
        # the backends' trust is the lab's alone, whatever the ALB trusts
        assert partner.subject not in [c.issuer for c in crls.load_crls(trust / "crl.pem")]
        assert pemfile.load_chain(trust / "ca.pem")[0].subject != partner.subject
    (partner_crl,) = crls.load_crls(lay.partner_crl)
    assert partner_crl.get_revoked_certificate_by_serial_number(revoked) is not None


def test_revoking_a_partner_client_re_signs_the_partner_crl_only(tmp_path):
    certs.ensure_pki(tmp_path)
    lay = certs.Layout(tmp_path)
    lab_crl = lay.crl.read_bytes()
    serial = certs.revoke(tmp_path, "partner")
    (partner_crl,) = crls.load_crls(lay.partner_crl)
    assert partner_crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert len(list(partner_crl)) == 2  # partner-revoked too: kept
    assert lay.crl.read_bytes() == lab_crl
    # and ensure_pki then reissues the partner client, whose lesson is to be accepted
    assert certs.ensure_pki(tmp_path).issued == ["partner"]
