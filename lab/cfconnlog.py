"""CloudFront's connection logs for viewer mutual TLS, as CloudFront's JSON output writes them:
one object per viewer connection, CloudFront's field names and `connectionStatus` codes.

AWS: "Connection logs" in the CloudFront Developer Guide
(https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/connection-logs.html,
research notes /work/research/cloudfront-mtls.md section 11). They reach the same file as the
ELB ones (lab/connlog.py: `log fd@3`, build/<project>/logs/cloudfront/connection.log); this
module builds HAProxy's formats and reads the objects back into the fields lab/connlog.py's
readers use.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

FIELDS = ("eventTimestamp", "connectionId", "connectionStatus", "clientIp", "clientPort", "serverIp",
          "distributionId", "distributionTenantId", "tlsProtocol", "tlsCipher", "tlsHandshakeDuration",
          "tlsSni", "clientLeafCertSerialNumber", "clientLeafCertSubject", "clientLeafCertIssuer",
          "clientLeafCertValidity", "connectionLogCustomData")
MAP_FILE = "cloudfront-status.map"  # beside haproxy.cfg: OpenSSL verify error -> CloudFront's code

# OpenSSL's X509_V_ERR_* numbers -> CloudFront's documented codes. 0 (no verify error) in a
# refused handshake is a missing certificate in required mode. Revocation and CRL errors have
# no CloudFront code (CloudFront checks OCSP, or a Connection Function denies): unmapped.
STATUS = {
    0: "ClientCertMissing",
    2: "ClientCertUntrusted", 18: "ClientCertUntrusted", 19: "ClientCertUntrusted",
    20: "ClientCertUntrusted", 21: "ClientCertUntrusted", 27: "ClientCertUntrusted",
    9: "ClientCertNotYetValid",
    10: "ClientCertExpired",
    6: "ClientCertInvalid", 7: "ClientCertInvalid", 13: "ClientCertInvalid", 14: "ClientCertInvalid",
    24: "ClientCertInvalid",
    22: "ClientCertMaxChainDepthExceeded", 25: "ClientCertMaxChainDepthExceeded",
    26: "ClientCertIntentInvalid",   # the certificate's purpose (extendedKeyUsage) is not clientAuth
    28: "ClientCertRejected",
}
UNMAPPED = "UnmappedConnectionError"

# HAProxy sample expressions, each JSON-escaped where the value comes from the certificate.
_DN = 'regsub("^/",""),regsub("/",", ",g),json(utf8s)'  # /O=x/CN=y -> "O=x, CN=y" (CloudFront's order)
_SERIAL = 'ssl_c_serial,hex,lower,regsub("..",":\\0",g),bytes(1)'


def distribution_id(project: str) -> str:
    """The distribution's ID as CloudFront writes it, E + 13 characters: a hash of the project,
    then HAProxy's `%fp` (the listener's port: one distribution per viewer mTLS mode)."""
    return "E" + hashlib.sha256(project.encode()).hexdigest()[:9].upper()


def _object(stamp: str, status: str, duration: str, project: str) -> str:
    values = {
        "eventTimestamp": stamp, "connectionId": "%[uuid(4),regsub(-,,g)]", "connectionStatus": status,
        "clientIp": "%ci", "clientPort": "%cp", "serverIp": "%fi",
        "distributionId": f"{distribution_id(project)}%fp", "distributionTenantId": "-",
        "tlsProtocol": "%sslv", "tlsCipher": "%sslc", "tlsHandshakeDuration": duration,
        "tlsSni": "%[ssl_fc_sni,json(utf8s)]", "clientLeafCertSerialNumber": f"%[{_SERIAL}]",
        "clientLeafCertSubject": f"%[ssl_c_s_dn,{_DN}]", "clientLeafCertIssuer": f"%[ssl_c_i_dn,{_DN}]",
        "clientLeafCertValidity": "VALIDITY", "connectionLogCustomData": "-"}
    body = ",".join(f'"{k}":"{v}"' for k, v in values.items())
    return "{" + body + "}"


def formats(project: str, status_var: str, validity: str, map_path: str) -> dict:
    """HAProxy's `log-format` (established) and `error-log-format` (refused) for CloudFront."""
    ok = _object("%[accept_date(ms)]", f"%[var({status_var},Success)]", "%[fc.timer.handshake]", project)
    error = _object("%[date(0,ms)]", f"Failed:%[ssl_c_err,map_int({map_path},{UNMAPPED})]", "-", project)
    return {"ok": ok.replace("VALIDITY", validity), "error": error.replace("VALIDITY", validity)}


def status_map() -> str:
    return "".join(f"{number} {code}\n" for number, code in sorted(STATUS.items()))


def parse(line: str) -> dict | None:
    """One CloudFront connection-log object -> its fields, plus what lab/connlog.py's readers
    use ("timestamp", "client_ip", "listener_port", "tls_verify_status"); None for anything else."""
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or list(record) != list(FIELDS):
        return None
    try:
        when = dt.datetime.fromtimestamp(int(record["eventTimestamp"]) / 1000, dt.timezone.utc)
    except ValueError:
        return None
    return {**record, "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "client_ip": record["clientIp"],
            "listener_port": record["distributionId"][10:], "tls_verify_status": record["connectionStatus"],
            "leaf_client_cert_subject": record["clientLeafCertSubject"],
            "leaf_client_cert_serial_number": record["clientLeafCertSerialNumber"].replace(":", "").upper()}
