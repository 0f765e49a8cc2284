"""`lab bench --smoke` keeps working: every figure is produced. No timing is asserted
(the benchmark's targets are checked by `lab bench` itself and recorded in docs/performance.md)."""

import json
import os
import subprocess
import sys


def test_bench_smoke_produces_every_figure(lab, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env.update({"LAB_HOME": str(lab.settings.home), "LAB_PROJECT": lab.settings.project})
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "lab", "bench", "--smoke", "--out", str(out)],
                          capture_output=True, text=True, env=env, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["paths"]) == {"direct (web1)", "nlb", "alb (mtls verify)"}
    for name, path in report["paths"].items():
        assert path["handshakes_per_s"] > 0 and path["keepalive_rps"] > 0, name
        assert path["keepalive_p50_ms"] <= path["keepalive_p99_ms"], name
        assert path["errors"] == 0, name
    assert report["nlb_over_direct_handshakes"] > 0
    assert report["pki_seconds"]["ec"] > 0 and report["pki_seconds"]["rsa"] > 0
    services = {"nlb", "web1", "web2", "sorry", "client", "alb", "alb-waf", "verifier", "nlb-tls",
                "cloudfront", "cloudfront-waf", "dns", "cdn"}
    assert set(report["memory_mib_at_rest"]) == services
    assert all(mib > 0 for mib in report["memory_mib_under_load"].values())
    assert set(report["targets"]) == {"nlb_over_direct_handshakes", "pki_ec_seconds", "up_warm_seconds",
                                      "idle_cpu_percent_of_one_core"}
    assert "idle_cpu" not in report  # --smoke skips the minute at rest
    assert "lifecycle_seconds" not in report  # --smoke never restarts the stack
    assert "NLB / direct" in proc.stdout
