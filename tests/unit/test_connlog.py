"""Connection logs (lab/connlog.py): the formats given to HAProxy, the map of reason codes,
the reader, and where the compose file puts them. The live lines: tests/integration/
test_connection_logs.py."""

import yaml
import pytest

from lab import cfconnlog, connlog, render
from lab.settings import Settings

AWS_CODES = {"ClientCertMaxChainDepthExceeded", "ClientCertMaxSizeExceeded", "ClientCertCrlHit",
             "ClientCertCrlProcessingError", "ClientCertUntrusted", "ClientCertNotYetValid",
             "ClientCertExpired", "ClientCertTypeUnsupported", "ClientCertInvalid", "ClientCertPurposeInvalid",
             "ClientCertRejected", "UnmappedConnectionError", "ClientCertIncompatible"}
LINE = ('2026-12-01T20:11:21.104963Z 203.0.113.100 49094 8451 TLSv1.3 TLS_AES_256_GCM_SHA384 0.007 '
        '"CN=alice,OU=clients,O=mTLS Lab" NotBefore=2026-12-01T20:04:41Z;NotAfter=2027-12-01T20:09:41Z '
        '3E3F Success TID_76df212e1b554273a92cd12c4ce0219e X25519 app/alb/0123456789abcdef 203.0.113.11')


def test_every_code_is_one_aws_documents():
    assert set(connlog.VERIFY_STATUS.values()) | {connlog.UNMAPPED} <= AWS_CODES
    assert connlog.VERIFY_STATUS[23] == "ClientCertCrlHit" and connlog.VERIFY_STATUS[10] == "ClientCertExpired"
    assert "Revoked" not in connlog.verify_map()
    assert connlog.verify_map().splitlines()[0].split(" ") == ["2", "ClientCertUntrusted"]


def test_a_line_parses_into_the_fields_in_aws_order():
    record = connlog.parse(LINE)
    assert list(record) == list(connlog.FIELDS) and len(record) == 15
    assert record["leaf_client_cert_subject"] == '"CN=alice,OU=clients,O=mTLS Lab"'
    assert record["tls_verify_status"] == "Success"


@pytest.mark.parametrize("line", [
    "Proxy alb_mtls_verify stopped (cumulated conns: FE: 3, BE: 0).",
    LINE.rsplit(" ", 1)[0],              # a field short
    LINE + " extra",                     # a field too many
    "x" + LINE[1:].replace("2026", "yyyy", 1),
])
def test_anything_else_is_not_a_record(line):
    assert connlog.parse(line) is None


def test_the_formats_have_fifteen_fields_and_refusals_no_latency():
    f = connlog.formats("alb", "p")
    # Success unless a rule after the handshake turned the connection away (connlog.STATUS_VAR)
    assert f["ok"].count(" %[var(txn.lab_status,Success)] ") == 1 and "error-log" not in f["ok"]
    assert " - " in f["error"] and "map_int(/etc/haproxy/lab/verify-status.map,UnmappedConnectionError)" in f["error"]
    assert connlog.elb_id("alb", "p").startswith("app/alb/") and connlog.elb_id("nlb-tls", "p").startswith("net/")


def test_render_writes_the_map_and_mounts_the_log(tmp_path):
    s = Settings.from_env(env={"LAB_HOME": str(tmp_path), "LAB_NLB_PORT": "0"})
    services = yaml.safe_load(render.compose_yaml(s, {}, "h"))["services"]
    for lb in ("alb", "nlb-tls", "cloudfront"):
        assert f"{s.build_dir.resolve()}/logs/{lb}:/var/log/lab" in services[lb]["volumes"]
        assert services[lb]["command"][-1].endswith("3>>/var/log/lab/connection.log")
    assert "command" not in services["nlb"]
    alb = render.haproxy_cfg(s, "alb")
    assert alb.count("log fd@3 format raw") == 2 and alb.count("error-log-format") == 2
    assert "log fd@3" not in render.haproxy_cfg(s, "nlb")
    cloudfront = render.haproxy_cfg(s, "cloudfront")
    assert cloudfront.count("log fd@3 format raw") == 2 and '"connectionStatus":"Failed:%[ssl_c_err,map_int(' in cloudfront
    assert "option dontlog-normal" not in render.haproxy_cfg(s, "nlb-tls")


def test_cloudfront_lines_parse_into_their_fields_and_the_readers_ones():
    line = ('{"eventTimestamp":"1796167814925","connectionId":"7e8d","connectionStatus":"Failed:ClientCertExpired",'
            '"clientIp":"198.18.30.1","clientPort":"45442","serverIp":"198.18.30.15","distributionId":"E58A904CCA8454",'
            '"distributionTenantId":"-","tlsProtocol":"TLSv1.3","tlsCipher":"TLS_AES_256_GCM_SHA384",'
            '"tlsHandshakeDuration":"-","tlsSni":"www.lab.test","clientLeafCertSerialNumber":"4c:63:04",'
            '"clientLeafCertSubject":"O=mTLS Lab, OU=clients, CN=expired","clientLeafCertIssuer":"O=mTLS Lab, CN=Root",'
            '"clientLeafCertValidity":"NotBefore=2026-11-01T23:17:59Z;NotAfter=2026-11-30T23:17:59Z",'
            '"connectionLogCustomData":"-"}')
    record = connlog.parse(line)
    assert list(record)[:len(cfconnlog.FIELDS)] == list(cfconnlog.FIELDS)
    assert (record["timestamp"], record["listener_port"], record["tls_verify_status"]) == (
        "2026-12-01T23:30:14.925000Z", "8454", "Failed:ClientCertExpired")
    assert record["leaf_client_cert_serial_number"] == "4C6304"
    assert connlog.parse(line.replace('"connectionId":"7e8d",', "")) is None   # not CloudFront's fields
    assert connlog.parse("{not json") is None
    # CloudFront's own vocabulary: no CRL code, a missing certificate has one
    assert "ClientCertCrlHit" not in cfconnlog.status_map() and "0 ClientCertMissing" in cfconnlog.status_map()
    assert len(cfconnlog.distribution_id("p") + "8454") == 14
