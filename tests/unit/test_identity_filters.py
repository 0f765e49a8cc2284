"""The NLB TLS listener's identity filters and PROXY v2 identity option: read once in
lab/settings.py (lab/identity_filters.py), rendered into the nlb-tls load balancer and the
backends. What they do end to end is in tests/integration/test_nlb_identity.py."""

import pytest

from lab import identity_filters, render
from lab.errors import SettingsError
from lab.identity_filters import Filter
from lab.settings import Settings


def settings(tmp_path, **env):
    return Settings.from_env(env={"LAB_HOME": str(tmp_path), **env})


def test_defaults_are_aws_defaults(tmp_path):
    s = settings(tmp_path)
    assert (s.nlb_tls_identity_filters, s.nlb_tls_proxy_identity) == ((), "off")
    cfg = render.haproxy_cfg(s, "nlb-tls")
    # no filters: revocation stays in the handshake, no Lua is loaded
    assert "crt-ignore-err" not in cfg and "lua-load" not in cfg and "tcp-request content" not in cfg
    # AWS passes the targets the client's address only: no certificate TLVs
    assert "send-proxy-v2 " in cfg and "send-proxy-v2-ssl" not in cfg
    assert "verified by the load balancer; not forwarded" in render.nginx_conf(s, "web1")
    assert identity_filters.files(s, s.build_dir, render.environment(), "x") == {}


def test_rules_parse_in_aws_vocabulary():
    assert identity_filters.parse(" subject-cn=alice , subject-ou:prefix=Eng,san-dns:exact=a.lab.test,"
                                  "san-uri=spiffe://lab.test/x") == (
        Filter("subject-cn", "alice"), Filter("subject-ou", "Eng", "prefix"),
        Filter("san-dns", "a.lab.test"), Filter("san-uri", "spiffe://lab.test/x"))
    assert identity_filters.parse("") == ()
    # a value may hold '=' and spaces (printable ASCII)
    assert identity_filters.parse("subject-ou=R&D = core") == (Filter("subject-ou", "R&D = core"),)
    assert identity_filters.text(identity_filters.parse("subject-cn:prefix=a,san-dns=b")) == "subject-cn:prefix=a,san-dns=b"


@pytest.mark.parametrize("raw, says", [
    ("alice", "has no '='"),
    ("subject-o=lab", "unknown field 'subject-o'"),
    ("subject-cn:regex=a.*", "unknown match type 'regex'"),
    ("subject-cn=", "1-256 printable ASCII"),
    ("subject-cn=" + "a" * 257, "1-256 printable ASCII"),
    ("subject-cn=caf\u00e9", "1-256 printable ASCII"),
    ("san-uri=//lab.test/x", "starts with a letter and a scheme"),
])
def test_bad_rules_name_the_fix(tmp_path, raw, says):
    with pytest.raises(SettingsError, match="LAB_NLB_TLS_IDENTITY_FILTERS") as err:
        settings(tmp_path, LAB_NLB_TLS_IDENTITY_FILTERS=raw)
    assert says in str(err.value)


def test_bad_proxy_identity_names_the_choices(tmp_path):
    with pytest.raises(SettingsError, match="LAB_NLB_TLS_PROXY_IDENTITY='subject': use off .* or cn"):
        settings(tmp_path, LAB_NLB_TLS_PROXY_IDENTITY="subject")


def test_filters_render_aws_order_into_the_nlb_tls_listener_only(tmp_path):
    s = settings(tmp_path, LAB_NLB_TLS_IDENTITY_FILTERS='subject-cn=alice,san-uri:prefix=spiffe://lab.test/"x\\')
    cfg = render.haproxy_cfg(s, "nlb-tls")
    assert "lua-load /etc/haproxy/lab/identity-filter.lua" in cfg
    # the chain in the handshake, a revoked leaf let through it ...
    assert "crl-file /etc/lab/trust/crl.pem crt-ignore-err X509_V_ERR_CERT_REVOKED" in cfg
    rules = [line.strip() for line in cfg.splitlines() if line.strip().startswith("tcp-request content")]
    # ... then the filters, then revocation, then the refusal
    assert "lua.lab_identity_admitted" in rules[0] and "Failed:ClientCertRejected" in rules[0]
    assert "ssl_c_err eq 23" in rules[1] and "Failed:ClientCertCrlHit" in rules[1]
    assert rules[2].startswith("tcp-request content reject")
    # the NLB with a TCP listener has no such option
    nlb = render.haproxy_cfg(s, "nlb")
    assert "identity-filter.lua" not in nlb and "crt-ignore-err" not in nlb
    files = identity_filters.files(s, s.build_dir, render.environment(), "banner")
    assert list(files) == [s.build_dir / "haproxy" / "nlb-tls" / identity_filters.LUA]
    lua = next(iter(files.values())).decode()
    # values are Lua string literals, quotes and backslashes escaped
    assert '{ field = "subject-cn", value = "alice", prefix = false }' in lua
    assert '{ field = "san-uri", value = "spiffe://lab.test/\\"x\\\\", prefix = true }' in lua


def test_proxy_identity_cn_sends_the_tlv_and_the_backends_read_it(tmp_path):
    s = settings(tmp_path, LAB_NLB_TLS_PROXY_IDENTITY="CN")
    assert "send-proxy-v2 send-proxy-v2-ssl-cn" in render.haproxy_cfg(s, "nlb-tls")
    assert "send-proxy-v2-ssl-cn" not in render.haproxy_cfg(s, "nlb")   # the TCP listener forwards TLS untouched
    web = render.nginx_conf(s, "web1")
    assert 'set $id_subject "CN=$proxy_protocol_tlv_ssl_cn";' in web
    assert "LAB_NLB_TLS_PROXY_IDENTITY=cn; AWS sends none" in web
