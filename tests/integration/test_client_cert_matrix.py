"""The full client-certificate matrix, through the NLB and straight to each backend.

One table: every case has one exact expected outcome, the same on every path (the NLB
passes TLS through, so it must not change a single verdict). Outcomes are nginx's own
words ($ssl_client_verify, HTTP 400) or the TLS alert that ended the handshake.
Zero false accepts: only alice, bob and carol ever get a 200.

nginx 1.22 keeps verifying after the first error and reports the last one: that is why
the self-signed certificate shows "unable to get certificate CRL" (no CRL exists for an
issuer nobody knows) and the rogue CA's leaf "unable to verify the first certificate".
"""

import collections

import pytest

from lab import certs
from lab.client import Host, request
from lab.credentials import Credentials

# (HTTP status, Answer.verdict): nginx's $ssl_client_verify when HTTP answered, else the error
OK = (200, "SUCCESS")


def refused(verdict):
    return (400, verdict)


# (case id, client files or builder, TLS version, expected outcome)
CASES = [
    ("alice", "alice", None, OK),
    ("bob", "bob", None, OK),
    ("carol-with-intermediate", "carol", None, OK),
    ("carol-leaf-only", "carol-leaf-only", None, refused("FAILED:unable to verify the first certificate")),
    ("no-certificate", None, None, refused("NONE")),
    ("expired", "expired", None, refused("FAILED:certificate has expired")),
    ("not-yet-valid", "not-yet-valid", None, refused("FAILED:certificate is not yet valid")),
    ("revoked", "revoked", None, refused("FAILED:certificate revoked")),
    ("rogue-ca", "rogue-ca", None, refused("FAILED:unable to verify the first certificate")),
    ("self-signed", "self-signed", None, refused("FAILED:unable to get certificate CRL")),
    ("no-client-eku", "no-client-eku", None, refused("FAILED:unsuitable certificate purpose")),
    # the partner CA is trusted by the ALB alone, on request (tests/integration/test_alb_options.py)
    ("partner", "partner", None, refused("FAILED:unable to verify the first certificate")),
    ("partner-revoked", "partner-revoked", None, refused("FAILED:unable to verify the first certificate")),
    ("alice-tls1.0", "alice", "TLSv1", (0, "TLSV1_ALERT_PROTOCOL_VERSION")),
    ("alice-tls1.1", "alice", "TLSv1_1", (0, "TLSV1_ALERT_PROTOCOL_VERSION")),
    ("alice-tls1.2", "alice", "TLSv1_2", OK),
    ("alice-tls1.3", "alice", "TLSv1_3", OK),
    # Every real client checks the pair before it sends anything; the server-side verdict
    # for a forged signature is in test_mismatched_key_is_refused_by_the_server.
    ("alice-cert-bob-key", "alice-cert-bob-key", None, (0, "client-refused: KEY_VALUES_MISMATCH")),
]
PATHS = ["nlb", "web1", "web2"]
ACCEPTED = {"alice", "bob", "carol-with-intermediate", "alice-tls1.2", "alice-tls1.3"}


@pytest.fixture(scope="module")
def client_files(certs_dir, tmp_path_factory):
    """case name -> (cert, key); built cases are written to a temporary folder."""
    lay = certs.Layout(certs_dir)
    files = {name: (lay.client_cert(name), lay.client_key(name)) for name in certs.CLIENT_NAMES}
    scratch = tmp_path_factory.mktemp("matrix")
    carol_pem = lay.client_cert("carol").read_text()
    leaf_only = scratch / "carol-leaf.crt"
    leaf_only.write_text(carol_pem[: carol_pem.index("-----END CERTIFICATE-----") + 26])
    files["carol-leaf-only"] = (leaf_only, lay.client_key("carol"))
    files["alice-cert-bob-key"] = (lay.client_cert("alice"), lay.client_key("bob"))
    return files


@pytest.fixture(scope="module")
def ports(lab):
    return {"nlb": lab.stack.nlb_port(), "web1": lab.stack.direct_port("web1"),
            "web2": lab.stack.direct_port("web2")}


def run_case(certs_dir, client_files, ports, path, client, tls_version):
    cert, key = client_files[client] if client else (None, None)
    answer = request(Host(certs_dir), Credentials(certs_dir, None, cert=cert, key=key), port=ports[path],
                     tls_version=tls_version)
    return (answer.status, answer.verdict)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case, client, tls_version, expected", [pytest.param(*c, id=c[0]) for c in CASES])
def test_matrix(certs_dir, client_files, ports, path, case, client, tls_version, expected):
    outcome = run_case(certs_dir, client_files, ports, path, client, tls_version)
    assert outcome == expected
    assert (outcome[0] == 200) == (case in ACCEPTED)


def test_zero_false_accepts_and_the_same_verdicts_on_every_path(certs_dir, client_files, ports):
    """The whole table at once, printed: nothing but the valid cases is accepted anywhere."""
    table = collections.defaultdict(dict)
    for case, client, tls_version, _ in CASES:
        for path in PATHS:
            table[case][path] = run_case(certs_dir, client_files, ports, path, client, tls_version)
    print("\n" + "\n".join(f"{case:26} " + " | ".join(f"{p}: {o}" for p, o in row.items())
                           for case, row in table.items()))
    accepted = {case for case, row in table.items() if any(o[0] == 200 for o in row.values())}
    assert accepted == ACCEPTED
    for case, row in table.items():
        assert len(set(row.values())) == 1, f"{case}: paths disagree: {row}"
