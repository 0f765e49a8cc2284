"""Seed claim C4: when every backend is down the sorry page answers; when they return,
traffic fails back to them, because the sorry page never enters the stick table."""

import pytest

from lab import probe

DETECT_TIMEOUT = 30  # generous bound; the measured times are printed by the test


@pytest.fixture
def backends_stopped(lab_stack):
    """Stop web1 and web2; always start them again and wait until they are healthy."""
    lab_stack.compose.run("stop", "--timeout", "2", "web1", "web2")
    try:
        yield
    finally:
        lab_stack.compose.run("start", "web1", "web2")
        lab_stack.compose.run("up", "--wait", "--no-build", "--no-recreate", "web1", "web2")


def test_sorry_page_takes_over_and_traffic_fails_back(lab_stack, certs_dir, nlb_port, runtime_api,
                                                       client_box, backends_stopped):
    s = lab_stack.settings
    outage_ip = s.client_extra_ips[10]  # a client that first shows up during the outage

    # All down: the sorry page answers, over TLS with the same certificate, 503, for everyone.
    reply = probe.wait_for(lambda: (r := probe.get(certs_dir, nlb_port, "alice")).backend == "sorry" and r,
                           DETECT_TIMEOUT, what="sorry page")
    assert reply.status == 503 and reply.body["backend"] == "sorry"
    page = probe.get(certs_dir, nlb_port, client=None, path="/")
    assert page.status == 503
    assert "down for maintenance" in page.body.lower()
    (outage,) = client_box.get("bob", outage_ip)
    assert outage.status == 503 and outage.backend == "sorry"
    # Never pinned to the sorry page (non-stick): no entry names it.
    assert "sorry" not in runtime_api.stick_table().values()
    assert outage_ip not in runtime_api.stick_table()

    # Backends return: traffic fails back without anyone clearing a table.
    lab_stack.compose.run("start", "web1", "web2")
    back = probe.wait_for(lambda: (r := probe.get(certs_dir, nlb_port, "alice")).status == 200 and r,
                          DETECT_TIMEOUT, what="fail back to web1/web2")
    assert back.backend in ("web1", "web2") and back.body["client_verify"] == "SUCCESS"
    probe.wait_for(lambda: runtime_api.server_states() == {"web1": "UP", "web2": "UP", "sorry": "UP"},
                   DETECT_TIMEOUT, what="both backends UP")
    (after,) = client_box.get("bob", outage_ip)
    assert after.status == 200 and after.backend in ("web1", "web2")
