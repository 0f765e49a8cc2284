"""What sslyze sees of the lab's TLS listeners, as JSON (run with sslyze's own Python).

    .venv-sslyze/bin/python lab/external/sslyze_probe.py --ca certs/ca.pem \
        --target nlb=127.0.0.1:8443 --target web1=127.0.0.1:8441

Runs in sslyze's virtualenv (sslyze pins an older cryptography than the lab), so it
imports nothing from the lab. It reports facts; the caller decides what is right:
- client_auth_requirement: sslyze's verdict (nginx completes the handshake without a
  certificate and refuses at HTTP level, so sslyze says OPTIONAL there);
- acceptable_client_ca_names: the CA list of the server's CertificateRequest;
- versions: which protocol versions accept at least one cipher suite;
- chain_valid: whether the served chain validates against --ca (hostname included).
"""

import argparse
import json
import sys
from pathlib import Path

from nassl.ssl_client import ClientCertificateRequested
from sslyze import (CertificateInfoExtraArgument, ScanCommand, ScanCommandAttemptStatusEnum,
                    ScanCommandsExtraArguments, Scanner, ServerNetworkConfiguration,
                    ServerNetworkLocation, ServerScanRequest, ServerScanStatusEnum, TlsVersionEnum)
from sslyze.connection_helpers.tls_connection import SslConnection

VERSIONS = {
    "SSL_2_0": ScanCommand.SSL_2_0_CIPHER_SUITES,
    "SSL_3_0": ScanCommand.SSL_3_0_CIPHER_SUITES,
    "TLS_1_0": ScanCommand.TLS_1_0_CIPHER_SUITES,
    "TLS_1_1": ScanCommand.TLS_1_1_CIPHER_SUITES,
    "TLS_1_2": ScanCommand.TLS_1_2_CIPHER_SUITES,
    "TLS_1_3": ScanCommand.TLS_1_3_CIPHER_SUITES,
}
SUPPLIED_STORE = "Supplied CA file"  # sslyze's name for the custom_ca_file trust store


def client_ca_names(location, config):
    """sslyze's results drop the CertificateRequest CA list; nassl's exception carries it."""
    conn = SslConnection(server_location=location, network_configuration=config,
                         tls_version=TlsVersionEnum.TLS_1_2, should_ignore_client_auth=False)
    try:
        conn.connect(should_retry_connection=False)
        return []
    except ClientCertificateRequested as exc:
        # OpenSSL one-line names ("/O=mTLS Lab/CN=...") to RFC 4514 ("CN=...,O=mTLS Lab")
        return [",".join(reversed([p for p in name.split("/") if p])) for name in exc._ca_list]
    finally:
        conn.close()


def report(name, location, config, result):
    out = {"name": name, "target": f"{location.ip_address}:{location.port}",
           "scan_status": result.scan_status.value}
    if result.scan_status != ServerScanStatusEnum.COMPLETED:
        out["error"] = result.connectivity_error_trace and str(result.connectivity_error_trace)
        return out
    out["client_auth_requirement"] = result.connectivity_result.client_auth_requirement.value
    out["acceptable_client_ca_names"] = client_ca_names(location, config)
    versions = {}
    for version, command in VERSIONS.items():
        attempt = getattr(result.scan_result, command.value)
        versions[version] = (bool(attempt.result.accepted_cipher_suites)
                             if attempt.status == ScanCommandAttemptStatusEnum.COMPLETED
                             else f"error: {attempt.error_reason}")
    out["versions"] = versions
    info = result.scan_result.certificate_info
    chains = []
    if info.status == ScanCommandAttemptStatusEnum.COMPLETED:
        for deployment in info.result.certificate_deployments:
            check = next(p for p in deployment.path_validation_results if p.trust_store.name == SUPPLIED_STORE)
            chains.append({
                "valid": check.was_validation_successful,
                "error": check.validation_error,
                "verified_chain": [c.subject.rfc4514_string() for c in (check.verified_certificate_chain or [])],
            })
    out["chains"] = chains
    out["chain_valid"] = bool(chains) and all(c["valid"] for c in chains)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", required=True, help="name=ip:port")
    parser.add_argument("--sni", default="www.lab.test")
    parser.add_argument("--ca", required=True, type=Path)
    parser.add_argument("--timeout", type=int, default=2)
    args = parser.parse_args()
    requests, meta = [], []
    for target in args.target:
        name, _, address = target.partition("=")
        ip, _, port = address.rpartition(":")
        location = ServerNetworkLocation(hostname=args.sni, port=int(port), ip_address=ip)
        config = ServerNetworkConfiguration(tls_server_name_indication=args.sni,
                                            network_timeout=args.timeout, network_max_retries=1)
        requests.append(ServerScanRequest(
            server_location=location, network_configuration=config,
            scan_commands={ScanCommand.CERTIFICATE_INFO, *VERSIONS.values()},
            scan_commands_extra_arguments=ScanCommandsExtraArguments(
                certificate_info=CertificateInfoExtraArgument(custom_ca_file=args.ca))))
        meta.append((name, location, config))
    scanner = Scanner()
    scanner.queue_scans(requests)
    results = {(r.server_location.ip_address, r.server_location.port): r for r in scanner.get_results()}
    out = [report(name, loc, cfg, results[(loc.ip_address, loc.port)]) for name, loc, cfg in meta]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
