"""Connection logs as an AWS load balancer writes them: one line per TLS connection, the
ALB connection-log fields in AWS's order, `tls_verify_status` in AWS's words.

Fields, order and the reason codes: AWS "Connection logs for your Application Load Balancer"
(https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-connection-logs.html,
research notes /work/research/alb-mtls.md section 7).

How the lines reach a file: HAProxy cannot open files, but it can log to a file descriptor
(`log fd@3`, one writev() per line, no extra process). The container's shell opens
build/<project>/logs/<lb>/connection.log for appending as fd 3 and execs HAProxy, so the file
survives restarts and reloads (the master re-executes itself with its descriptors). Lines
of established connections come from `log-format`, refused handshakes from
`error-log-format` (HAProxy 2.7+), whose `ssl_c_err` still holds OpenSSL's verify error.
This module builds both formats for the templates and reads the lines back.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from . import cfconnlog
from .designs import DESIGNS, LOAD_BALANCERS

FIELDS = ("timestamp", "client_ip", "client_port", "listener_port", "tls_protocol", "tls_cipher",
          "tls_handshake_latency", "leaf_client_cert_subject", "leaf_client_cert_validity",
          "leaf_client_cert_serial_number", "tls_verify_status", "conn_trace_id", "tls_keyexchange",
          "elb", "ip_address")
LOG_DIR = "/var/log/lab"      # inside a load balancer's container
LOG_FILE = "connection.log"
LOG_FD = 3
MAP_FILE = "verify-status.map"  # beside haproxy.cfg: OpenSSL verify error -> AWS reason code

# OpenSSL's X509_V_ERR_* numbers (openssl/x509_vfy.h) -> AWS's documented reason codes.
# Not produced: ClientCertMaxSizeExceeded, ClientCertTypeUnsupported (no OpenSSL verify error
# says so). 0 (no verify error: no certificate sent, or a handshake failing for another
# reason) is UnmappedConnectionError, as is any number not listed here.
VERIFY_STATUS = {
    2: "ClientCertUntrusted",     # unable to get issuer certificate
    3: "ClientCertCrlProcessingError",  # unable to get certificate CRL
    4: "ClientCertCrlProcessingError",  # unable to decrypt CRL's signature
    6: "ClientCertInvalid",       # unable to decode issuer public key
    7: "ClientCertInvalid",       # certificate signature failure
    8: "ClientCertCrlProcessingError",  # CRL signature failure
    9: "ClientCertNotYetValid",
    10: "ClientCertExpired",
    11: "ClientCertCrlProcessingError",  # CRL is not yet valid
    12: "ClientCertCrlProcessingError",  # CRL has expired
    13: "ClientCertInvalid",      # format error in certificate's notBefore field
    14: "ClientCertInvalid",      # format error in certificate's notAfter field
    15: "ClientCertCrlProcessingError",  # format error in CRL's lastUpdate field
    16: "ClientCertCrlProcessingError",  # format error in CRL's nextUpdate field
    18: "ClientCertUntrusted",    # self-signed certificate
    19: "ClientCertUntrusted",    # self-signed certificate in certificate chain
    20: "ClientCertUntrusted",    # unable to get local issuer certificate
    21: "ClientCertUntrusted",    # unable to verify the first certificate
    22: "ClientCertMaxChainDepthExceeded",  # certificate chain too long
    23: "ClientCertCrlHit",       # certificate revoked
    24: "ClientCertInvalid",      # invalid CA certificate
    25: "ClientCertMaxChainDepthExceeded",  # path length constraint exceeded
    26: "ClientCertPurposeInvalid",  # unsuitable certificate purpose
    27: "ClientCertUntrusted",    # certificate not trusted
    28: "ClientCertRejected",     # certificate rejected
    33: "ClientCertCrlProcessingError",  # unable to get CRL issuer certificate
    35: "ClientCertCrlProcessingError",  # key usage does not include CRL signing
    44: "ClientCertCrlProcessingError",  # different CRL scope
    66: "ClientCertIncompatible",  # EE key too small (for the security policy)
    67: "ClientCertIncompatible",  # CA key too small
    68: "ClientCertIncompatible",  # CA signature digest algorithm too weak
}
UNMAPPED = "UnmappedConnectionError"
# A connection turned away after its handshake (the NLB TLS listener's identity filters, then
# its revocation check) carries its tls_verify_status in this variable; unset: Success.
STATUS_VAR = "txn.lab_status"

# ISO 8601 from HAProxy's pieces. ssl_c_notbefore/notafter are UTCTime strings; the validity
# comes out of the leaf's DER in one expression (two fetches would print "--" without a
# certificate, where AWS prints "-"): the two consecutive UTCTimes (tag 17, length 0D,
# 13 ASCII digits and Z) are the validity, and an ASCII digit's hex is "3" + the digit.
_TIME = "utime(%Y-%m-%dT%H:%M:%S)"
_MICROS = "add(1000000),regsub(^1,)"  # zero-padded to 6 digits
_VALIDITY = ('%[ssl_c_der,hex,regsub("^.*170D((3.){12}5A170D(3.){12}5A).*$","\\1"),regsub("3(.)","\\1",g),'
             'regsub("^(..)(..)(..)(..)(..)(..)5A170D","NotBefore=20\\1-\\2-\\3T\\4:\\5:\\6Z;NotAfter="),'
             'regsub("=(..)(..)(..)(..)(..)(..)5A$","=20\\1-\\2-\\3T\\4:\\5:\\6Z")]')
_SUBJECT = '%[ssl_c_s_dn(,0,rfc2253),regsub("^(.+)$","\\"\\1\\"")]'
_LATENCY = "%[fc.timer.handshake,div(1000)].%[fc.timer.handshake,mod(1000),add(1000),regsub(^1,)]"
_TRACE = "TID_%[uuid(4),regsub(-,,g)]"


def elb_id(service: str, project: str) -> str:
    """The load balancer's resource ID as AWS writes it: app|net/<name>/<16 hex>."""
    kind = "app" if LOAD_BALANCERS[service].waf else "net"
    return f"{kind}/{service}/{hashlib.sha256(project.encode()).hexdigest()[:16]}"


def formats(service: str, project: str) -> dict:
    """HAProxy's `log-format` (established) and `error-log-format` (refused) for ``service``."""
    if LOAD_BALANCERS[service].log_format == "cloudfront":
        return {**cfconnlog.formats(project, STATUS_VAR, _VALIDITY, f"/etc/haproxy/lab/{cfconnlog.MAP_FILE}"),
                "fd": LOG_FD}
    tail = f"{_TRACE} %[ssl_fc_curve] {elb_id(service, project)} %fi"
    cert = f"{_SUBJECT} {_VALIDITY} %[ssl_c_serial,hex]"
    # accept_date is the stream's; a refused handshake has no stream, so its line takes the
    # time of the refusal
    ok = (f"%[accept_date,{_TIME}].%[accept_date(us),mod(1000000),{_MICROS}]Z %ci %cp %fp %sslv %sslc "
          f"{_LATENCY} {cert} %[var({STATUS_VAR},Success)] {tail}")
    error = (f"%[date,{_TIME}].%[date_us,{_MICROS}]Z %ci %cp %fp %sslv %sslc - {cert} "
             f"Failed:%[ssl_c_err,map_int(/etc/haproxy/lab/{MAP_FILE},{UNMAPPED})] {tail}")
    return {"ok": ok, "error": error, "fd": LOG_FD}


def verify_map() -> str:
    """The map file: one "<X509_V_ERR number> <AWS reason code>" per line."""
    return "".join(f"{number} {code}\n" for number, code in sorted(VERIFY_STATUS.items()))


def map_file(service: str) -> tuple[str, str]:
    """(file name, contents) of the status map beside ``service``'s haproxy.cfg."""
    if LOAD_BALANCERS[service].log_format == "cloudfront":
        return cfconnlog.MAP_FILE, cfconnlog.status_map()
    return MAP_FILE, verify_map()


def services() -> tuple:
    """The load balancers that write connection logs."""
    return tuple(lb.service for lb in LOAD_BALANCERS.values() if lb.connection_log)


def path(build_dir: Path, service: str) -> Path:
    return Path(build_dir) / "logs" / service / LOG_FILE


_TOKEN = re.compile(r'"[^"]*"|\S+')


def parse(line: str) -> dict | None:
    """One connection-log line -> {field: value}, or None for anything else (HAProxy's own
    notices, such as a proxy stopping at a reload, go to the same file). CloudFront's lines
    carry their own fields and the ELB ones the readers use (lab/cfconnlog.py)."""
    if line.startswith("{"):  # CloudFront's JSON objects
        return cfconnlog.parse(line.strip())
    tokens = _TOKEN.findall(line.strip())
    if len(tokens) != len(FIELDS) or not re.match(r"\d{4}-\d\d-\d\dT", tokens[0]):
        return None
    return dict(zip(FIELDS, tokens))


def read(build_dir: Path, design: str | None = None) -> list[dict]:
    """Every record of the connection logs (one design's listener only, if given), oldest first."""
    chosen = [DESIGNS[design].service] if design else list(services())
    records = []
    for service in chosen:
        log = path(build_dir, service)
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        port = str(DESIGNS[design].container_port) if design else None
        for line in lines:
            record = parse(line)
            if record and (port is None or record["listener_port"] == port):
                records.append({"service": service, **record, "line": line})
    return sorted(records, key=lambda r: r["timestamp"])


def show(build_dir: Path, design: str | None = None, echo=print) -> int:
    """Print the connection logs (one design's, if given): AWS's lines, oldest first.

    Returns:
        How many lines were printed.

    Raises:
        LabError: for a design that keeps no connection log, naming those that do.
    """
    from .errors import LabError

    keeping = [name for name, d in DESIGNS.items() if d.connection_log]
    if design is not None and design not in keeping:
        raise LabError(f"{design!r} keeps no connection log: choose one of {', '.join(keeping)}")
    records = read(build_dir, design)
    for record in records:
        echo(record["line"])
    return len(records)
