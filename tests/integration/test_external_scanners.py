"""External validation with tools nobody here wrote: sslyze and openssl s_client, against
the NLB and each backend's direct listener.

sslyze reports client authentication as OPTIONAL: nginx finishes the handshake without a
certificate and refuses at HTTP level (400), which a TLS scanner cannot see. The refusal
itself is proven by test_client_cert_matrix.
"""

import shutil
import subprocess

import pytest

from lab import certs, scan
from lab.settings import REPO_ROOT
from lab.ui import UI

TARGETS = ["nlb", "web1", "web2"]


@pytest.fixture(scope="module")
def ports(lab):
    return {"nlb": lab.stack.nlb_port(), "web1": lab.stack.direct_port("web1"),
            "web2": lab.stack.direct_port("web2")}


@pytest.fixture(scope="module")
def sslyze_findings(lab, ports):
    python = scan.ensure_sslyze(REPO_ROOT / ".venv-sslyze", UI())
    findings = scan.scan(python, lab.settings.certs_dir, {n: ("127.0.0.1", p) for n, p in ports.items()})
    return {f["name"]: f for f in findings}


@pytest.mark.parametrize("target", TARGETS)
def test_sslyze(sslyze_findings, target):
    finding = sslyze_findings[target]
    assert finding["scan_status"] == "COMPLETED", finding
    assert finding["client_auth_requirement"] == "OPTIONAL"
    assert finding["acceptable_client_ca_names"] == ["CN=mTLS Lab Root CA,O=mTLS Lab"]
    assert scan.verdicts(finding) == {key: True for key in scan.verdicts(finding)}
    assert finding["chains"][0]["verified_chain"] == ["CN=www.lab.test,O=mTLS Lab", "CN=mTLS Lab Root CA,O=mTLS Lab"]


def test_sslyze_verdicts_can_fail():
    """Negative control for the checks above: a listener that offers TLS 1.0 and no client CA fails."""
    bad = {"client_auth_requirement": "DISABLED", "acceptable_client_ca_names": [], "chain_valid": False,
           "versions": {"SSL_2_0": False, "SSL_3_0": False, "TLS_1_0": True, "TLS_1_1": False,
                        "TLS_1_2": True, "TLS_1_3": True}}
    assert not any(scan.verdicts(bad).values())


def s_client(certs_dir, port, *extra):
    lay = certs.Layout(certs_dir)
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "www.lab.test",
                           "-CAfile", str(lay.ca_cert), "-verify_hostname", "www.lab.test", *extra],
                          input="", capture_output=True, text=True, timeout=15, check=False)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
@pytest.mark.parametrize("target", TARGETS)
def test_openssl_s_client(certs_dir, ports, target):
    ok = s_client(certs_dir, ports[target], "-brief")
    assert ok.returncode == 0, ok.stderr
    full = s_client(certs_dir, ports[target])
    assert "Acceptable client certificate CA names\nO = mTLS Lab, CN = mTLS Lab Root CA\n" in full.stdout
    assert "Verify return code: 0 (ok)" in full.stdout
    for old in ("-tls1", "-tls1_1"):
        refused = s_client(certs_dir, ports[target], old, "-cipher", "DEFAULT:@SECLEVEL=0")
        assert refused.returncode != 0 and "alert protocol version" in refused.stderr
    # negative control: trusting only the rogue CA, the chain does not verify
    lay = certs.Layout(certs_dir)
    rogue = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{ports[target]}", "-servername",
                            "www.lab.test", "-CAfile", str(lay.rogue_cert), "-verify_return_error"],
                           input="", capture_output=True, text=True, timeout=15, check=False)
    assert rogue.returncode != 0 and "unable to get local issuer certificate" in rogue.stdout + rogue.stderr
