"""`lab dashboard` against the session's real lab, looked at in a real headless Chromium
(tests/integration/chromium_cdp.py): the page shows the running designs; a client pinned by
the test, and a client refused by the test, appear on it within a few seconds (and are not
there before); the page is read-only and costs one look a second whatever the number of
pages, none without a page; a taken port is one line naming the fix; Ctrl-C stops it."""

import os
import re
import selectors
import signal
import subprocess
import sys
import time

import pytest
import requests

from chromium_cdp import Chromium, available
from lab.client import Listener
from lab.dashboard.collect import Collector
from lab.designs import DESIGNS

SCREENSHOT = "dashboard.png"  # docs/images/ has the README's (fixture `screenshots`)
SEEN_WITHIN = 5.0  # seconds: "a request appears on it within a few seconds"

pytestmark = pytest.mark.skipif(not available(), reason="needs /usr/bin/chromium (Debian's chromium package)")


def _env(lab, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env.update({"LAB_HOME": str(lab.settings.home), "LAB_PROJECT": lab.settings.project,
                "LAB_CERTS_DIR": str(lab.settings.certs_dir)}, **extra)
    return env


def start_dashboard(lab, *args, timeout=30):
    """`lab dashboard --port 0 ARGS` in the background; returns (process, its URL)."""
    proc = subprocess.Popen([sys.executable, "-m", "lab", "dashboard", "--port", "0", *args], env=_env(lab),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    chooser = selectors.DefaultSelector()
    chooser.register(proc.stdout, selectors.EVENT_READ)
    if not chooser.select(timeout) or proc.poll() is not None:
        proc.kill()
        raise AssertionError(f"`lab dashboard` printed no URL within {timeout} s: {proc.stderr.read()}")
    url = proc.stdout.readline().strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), url
    return proc, url


@pytest.fixture(scope="module")
def dashboard(lab):
    proc, url = start_dashboard(lab)
    try:
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def browser():
    chromium = Chromium(height=1300)  # the whole page, for the README's screenshot
    try:
        yield chromium
    finally:
        chromium.close()


def running_designs(lab):
    """Every design of the load balancers this lab runs (a load balancer serves all its listeners)."""
    services = {DESIGNS[d].service for d in ("nlb", *lab.settings.designs)}
    return [name for name, d in DESIGNS.items() if d.service in services]


def meta(url):
    return requests.get(url + "api/meta", timeout=5).json()


def look_time(page):
    """The time of the look the page drew last (the server's clock)."""
    return page.evaluate("Number(document.getElementById('live').dataset.time || 0)")


def stick_row(ip):
    cell = f"table.stick[data-lb=nlb] tr[data-client=\"{ip}\"] td:last-child"
    return f"(document.querySelector('{cell}') || {{}}).textContent"


def test_page_shows_the_designs_and_a_new_pin_within_seconds(lab, dashboard, browser):
    page = browser.open(dashboard)
    try:
        running = running_designs(lab)
        shown = page.wait_for("[...document.querySelectorAll('.lb [data-design]')].map(e => e.dataset.design)",
                              what="the designs")
        assert sorted(shown) == sorted(running)
        assert page.evaluate("document.querySelector('[data-service=web1]').textContent") == "web1: UP L7OK"

        source = lab.settings.client_pool.users[-1]
        lab.runtime_api.forget([source])
        forgotten = time.time()
        page.wait_for(f"Number(document.getElementById('live').dataset.time) > {forgotten}", what="a fresh look")
        assert page.evaluate(stick_row(source)) is None  # negative control: not pinned yet

        sent = time.monotonic()
        answers = lab.from_ip(source).get("alice", count=3)
        backend = answers[0].backend
        assert {a.backend for a in answers} == {backend}
        assert page.wait_for(stick_row(source), timeout=SEEN_WITHIN, what=f"{source} in the nlb stick table") == backend
        seen = time.monotonic() - sent
        sums = page.wait_for(f"(t => Number(t.dataset.sum) >= 3 && t.dataset.sum)"
                             f"(document.querySelector('#legend [data-target={backend}]'))",
                             timeout=SEEN_WITHIN, what=f"3 requests to {backend} in the chart")
        assert int(sums) >= 3
        print(f"\nthe pin of {source} -> {backend} appeared on the page {seen:.1f} s after the request")
    finally:
        page.close()


def test_a_refused_client_appears_with_why(lab, dashboard, browser, from_client, screenshots):
    design = "alb-mtls-verify"
    if design not in lab.settings.designs:
        pytest.skip(f"{design} is not running")
    page = browser.open(dashboard)
    try:
        page.wait_for("!!document.querySelector('#refused tbody tr')", what="the refused table")
        source = lab.settings.client_pool.users[-2]
        since = time.time() - 0.5  # the log's timestamps are the same clock, to the microsecond
        refused_row = (f"[...document.querySelectorAll('#refused tr[data-client=\"{source}\"]')]"
                       f".filter(r => Date.parse(r.dataset.time) / 1000 > {since})"
                       ".map(r => [r.dataset.design, r.querySelector('.reason').textContent])")
        assert page.evaluate(refused_row) == []  # negative control: not refused yet
        listener = Listener(from_client, design, lab.settings.lb_ips(DESIGNS[design].service)[0],
                            DESIGNS[design].container_port)
        answer = listener.get("rogue-ca", source)
        assert answer.status is None or answer.status != 200, answer
        shown = page.wait_for(f"(r => r.length && r)({refused_row})", timeout=SEEN_WITHIN,
                              what=f"{source} among the refused clients")
        assert shown == [[design, "ClientCertUntrusted"]]
        page.screenshot(screenshots / SCREENSHOT)  # the README's: designs, a pin, requests, a refused client
    finally:
        page.close()


def test_read_only_and_loopback_names_only(dashboard):
    assert requests.get(dashboard, timeout=5).status_code == 200
    for path in ("", "events", "api/meta", "static/dashboard.js"):
        refused = requests.post(dashboard + path, data="x", timeout=5)
        assert refused.status_code == 405 and refused.headers["Allow"] == "GET,HEAD", path
    assert requests.delete(dashboard + "api/meta", timeout=5).status_code == 405
    # a page elsewhere cannot read it through a name it points at 127.0.0.1 (DNS rebinding)
    assert requests.get(dashboard, headers={"Host": "rebind.example:8480"}, timeout=5).status_code == 403
    assert requests.get(dashboard, headers={"Host": "localhost:8480"}, timeout=5).status_code == 200


def test_one_look_a_second_shared_by_every_page_and_none_without(dashboard, browser):
    deadline = time.monotonic() + 10
    while meta(dashboard)["pages"] and time.monotonic() < deadline:  # the pages above have gone
        time.sleep(0.2)
    before = meta(dashboard)
    assert before["pages"] == 0
    time.sleep(3)  # a measurement window, not a wait: nothing may happen in it
    assert meta(dashboard)["polls"] == before["polls"]

    pages = [browser.open(dashboard) for _ in range(3)]
    try:
        for page in pages:
            page.wait_for("!!document.querySelector('[data-design]')", what="a drawn look")
        start = meta(dashboard)
        assert start["pages"] == 3
        window = 5.0
        time.sleep(window)  # the measurement window
        looks = meta(dashboard)["polls"] - start["polls"]
        assert window - 1.5 <= looks <= window + 1.5, f"{looks} looks in {window} s with three pages open"
    finally:
        for page in pages:
            page.close()


def test_a_taken_port_is_one_line_naming_the_fix(lab, dashboard):
    port = dashboard.rsplit(":", 1)[1].strip("/")
    proc = subprocess.run([sys.executable, "-m", "lab", "dashboard", "--port", port], env=_env(lab),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port} is in use" in lines[0] and "--port" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_ctrl_c_stops_it_cleanly(lab):
    proc, url = start_dashboard(lab)
    stream = requests.get(url + "events", stream=True, timeout=10)  # an open page
    assert next(stream.iter_lines()).startswith(b"data: {")
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=10)
    finally:
        stream.close()
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    assert code == 0 and "Traceback" not in stderr and "dashboard stopped" in stderr, stderr


def test_collector_reads_pins_counts_and_refusals_from_the_real_stack(lab, from_client):
    collector = Collector(lab.stack, lab.dc)
    first = collector.look()
    assert first["designs_up"] == running_designs(lab)
    assert {s["service"]: s["ok"] for s in first["services"]}["web1"] is True
    assert first["requests"]["history"] == []  # one look: no growth measured yet
    source = lab.settings.client_pool.users[-3]
    lab.runtime_api.forget([source])
    assert source not in collector.look()["stick_tables"]["nlb"]
    answers = lab.from_ip(source).get("alice", count=4)
    after = collector.look()
    assert after["stick_tables"]["nlb"][source] == answers[0].backend
    assert after["requests"]["history"][-1][answers[0].backend] >= 4
    other = next(t for t in ("web1", "web2") if t != answers[0].backend)
    assert after["requests"]["history"][-1][other] < 4  # the pinned client sent none there
    if "nlb-tls-mtls" in lab.settings.designs:
        listener = Listener(from_client, "nlb-tls-mtls", lab.settings.lb_ips("nlb-tls")[0],
                            DESIGNS["nlb-tls-mtls"].container_port)
        listener.get("expired", source)
        deadline = time.monotonic() + SEEN_WITHIN
        refused = []
        while not refused and time.monotonic() < deadline:
            refused = [r for r in collector.look()["refused"] if r["client_ip"] == source]
            time.sleep(0.2)
        assert refused and refused[0]["design"] == "nlb-tls-mtls" and refused[0]["reason"] == "ClientCertExpired"
        assert "CN=expired" in refused[0]["subject"]
