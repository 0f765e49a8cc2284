"""Verify the client certificate chain an ALB forwards in passthrough mode.

With ALB mutual TLS in passthrough mode the load balancer asks for a client certificate
but does not check it: it forwards the whole chain, URL-encoded PEM, in the
X-Amzn-Mtls-Clientcert header, and the target must verify it. nginx cannot verify a
certificate from a header, so the backends ask this service (nginx auth_request):

    GET /verify   X-Amzn-Mtls-Clientcert: <url-encoded PEM>
    -> 200  X-Client-Verify: SUCCESS, X-Client-Subject/-Issuer/-Serial
    -> 401  X-Client-Verify: NONE | FAILED:<openssl's reason>

The check is `openssl verify` against the lab CA and CRLs with purpose sslclient: the
same OpenSSL rules nginx applies to a TLS client. (HAProxy's ssl_c_chain_der gives the
intermediates as concatenated DER, so a PEM block may hold several certificates.)
"""

import base64
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import urllib.parse

TRUST = os.environ.get("LAB_TRUST_DIR", "/etc/lab/trust")
PORT = int(os.environ.get("LAB_VERIFIER_PORT", "9000"))
# The load balancers' health-check identity: valid, but not a user (it opens /healthz only).
HEALTH_CN = os.environ.get("LAB_HEALTH_CN", "lab-health")
# openssl runs on client-supplied data: bound its time (and nginx bounds the header's size).
OPENSSL_TIMEOUT = 5
PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
OPENSSL_ERROR = re.compile(r"error \d+ at \d+ depth lookup: (.+)")


def split_der(data: bytes):
    """Split concatenated DER certificates (each an ASN.1 SEQUENCE)."""
    i = 0
    while i < len(data):
        if data[i] != 0x30 or i + 2 > len(data):
            raise ValueError("not a DER certificate")
        first = data[i + 1]
        if first < 0x80:
            header, length = 2, first
        else:
            count = first & 0x7F
            header, length = 2 + count, int.from_bytes(data[i + 2:i + 2 + count], "big")
        yield data[i:i + header + length]
        i += header + length


def to_pem(der: bytes) -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def certificates(header: str) -> list:
    text = urllib.parse.unquote(header)
    ders = []
    for block in PEM_BLOCK.findall(text):
        ders.extend(split_der(base64.b64decode("".join(block.split()))))
    return ders


def verify(header: str) -> dict:
    """The verdict for one X-Amzn-Mtls-Clientcert value."""
    if not header:
        return {"verify": "NONE"}
    try:
        ders = certificates(header)
    except (ValueError, base64.binascii.Error):
        return {"verify": "FAILED:unreadable certificate"}
    if not ders:
        return {"verify": "FAILED:unreadable certificate"}
    with tempfile.TemporaryDirectory() as tmp:
        leaf, chain = os.path.join(tmp, "leaf.pem"), os.path.join(tmp, "chain.pem")
        with open(leaf, "w") as fh:
            fh.write(to_pem(ders[0]))
        argv = ["openssl", "verify", "-CAfile", f"{TRUST}/ca.pem", "-crl_check_all",
                "-CRLfile", f"{TRUST}/crl.pem", "-purpose", "sslclient"]
        if len(ders) > 1:
            with open(chain, "w") as fh:
                fh.write("".join(to_pem(d) for d in ders[1:]))
            argv += ["-untrusted", chain]
        try:
            proc = subprocess.run(argv + [leaf], capture_output=True, text=True, check=False,
                                  timeout=OPENSSL_TIMEOUT)
            if proc.returncode != 0:
                reason = OPENSSL_ERROR.search(proc.stdout + proc.stderr)
                return {"verify": f"FAILED:{reason.group(1).strip() if reason else 'verification failed'}"}
            info = subprocess.run(["openssl", "x509", "-in", leaf, "-noout", "-subject", "-issuer", "-serial",
                                   "-nameopt", "RFC2253"], capture_output=True, text=True, check=True,
                                  timeout=OPENSSL_TIMEOUT).stdout
        except subprocess.TimeoutExpired:
            return {"verify": "FAILED:verification timed out"}
    fields = dict(line.split("=", 1) for line in info.splitlines() if "=" in line)
    if fields.get("subject", "").startswith(f"CN={HEALTH_CN},"):
        return {"verify": "FAILED:the health-check certificate is for health checks only"}
    return {"verify": "SUCCESS", "subject": fields.get("subject", ""), "issuer": fields.get("issuer", ""),
            "serial": fields.get("serial", "")}


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "lab-verifier"

    def do_GET(self):
        if self.path == "/healthz":
            self._answer(200, {})
            return
        if self.path != "/verify":
            self._answer(404, {})
            return
        verdict = verify(self.headers.get("X-Amzn-Mtls-Clientcert", ""))
        status = 200 if verdict["verify"] == "SUCCESS" else 401
        self._answer(status, {f"X-Client-{k.title()}": v for k, v in verdict.items()})
        print(json.dumps({"peer": self.client_address[0], "status": status, **verdict}), flush=True)

    def _answer(self, status, headers):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):  # one JSON line per verdict instead (above)
        pass


def main():
    server = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(f"lab-verifier listening on :{PORT}, trust in {TRUST}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
