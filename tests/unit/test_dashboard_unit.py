"""`lab dashboard` without Docker: reading `show stat` (a real ALB's answer, five of its
columns kept), the connection-log tail on real files, the hub's one shared look a second
(none without a subscriber), and the web server's read-only surface and shipped assets
(a real aiohttp server on loopback). tests/integration/test_dashboard.py runs it against
the real lab in headless Chromium."""

import asyncio
import json

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from lab.dashboard import server
from lab.dashboard.collect import LogTail, parse_stat, refusal, target_checks, target_totals
from lab.dashboard.hub import Hub

# `show stat` of a running ALB (HAProxy 3.0), columns pxname,svname,stot,status,check_status
ALB_STAT = """# pxname,svname,stot,status,check_status
alb,FRONTEND,1,OPEN,
waf_alb,waf,1,no check,
waf_alb,BACKEND,1,UP,
alb_inspected,FRONTEND,1,OPEN,
targets_alb,web1,1,UP,L7OK
targets_alb,web2,0,UP,* L7OK
targets_alb,sorry,0,UP,L7OK
targets_alb,BACKEND,1,UP,
targets_alb_mtls_verify,web1,5,UP,
targets_alb_mtls_verify,web2,2,DOWN,
targets_alb_mtls_verify,sorry,0,UP,
targets_alb_mtls_verify,BACKEND,7,UP,
stats,FRONTEND,17,OPEN,
"""
REFUSED = ('2026-12-01T23:35:58.307935Z 198.18.120.105 57032 8451 TLSv1.3 TLS_AES_256_GCM_SHA384 - '
           '"CN=rogue-ca,OU=clients,O=mTLS Lab" NotBefore=2026-12-01T23:14:51Z;NotAfter=2027-12-01T23:19:51Z '
           '3FC79716981A93FB051B1B00F64B8FEAF863332F Failed:ClientCertUntrusted TID_568b1a11c2884a2580e9a4ed3c6bc98f '
           'X25519MLKEM768 app/alb/af9d2c92ddc38ca7 198.18.120.11')


def test_targets_counted_over_every_backend_and_the_waf_left_out():
    rows = parse_stat(ALB_STAT)
    assert target_totals(rows) == {"web1": 6, "web2": 2, "sorry": 0}
    assert parse_stat("Unknown command\n") == []


def test_target_health_from_the_checking_backend_only():
    checks = target_checks(parse_stat(ALB_STAT), "targets_alb")
    assert checks == {"web1": {"status": "UP", "check": "L7OK"}, "web2": {"status": "UP", "check": "L7OK"},
                      "sorry": {"status": "UP", "check": "L7OK"}}
    # a load balancer that sends no checks (CloudFront): its first backend with targets
    assert target_checks(parse_stat(ALB_STAT), "")["web1"]["status"] == "UP"
    assert target_checks(parse_stat(ALB_STAT), "targets_alb_mtls_verify")["web2"] == {"status": "DOWN", "check": "none"}


def test_a_refused_line_names_design_reason_and_subject():
    from lab import connlog

    assert refusal("alb", connlog.parse(REFUSED)) == {
        "time": "2026-12-01T23:35:58.307935Z", "client_ip": "198.18.120.105", "design": "alb-mtls-verify",
        "reason": "ClientCertUntrusted", "subject": "CN=rogue-ca,OU=clients,O=mTLS Lab"}


def test_log_tail_reads_growth_partial_lines_and_a_replaced_file(tmp_path):
    log = tmp_path / "connection.log"
    tail = LogTail(log, start=16)
    assert tail.new_lines() == []  # no file yet
    log.write_text("old line one that is long\nold two\n")
    assert tail.new_lines() == ["old two"]  # first read: the last 16 bytes, the cut line dropped
    assert tail.new_lines() == []
    with log.open("a") as f:
        f.write("new three\nhalf")
    assert tail.new_lines() == ["new three"]
    with log.open("a") as f:
        f.write(" done\n")
    assert tail.new_lines() == ["half done"]
    log.unlink()
    log.write_text("after a restart\n")  # replaced (smaller, another inode): read from the start
    assert tail.new_lines() == ["after a restart"]


def test_hub_looks_once_per_interval_for_all_pages_and_never_without_one():
    looks = []

    def look():
        looks.append(1)
        return {"n": len(looks)}

    async def scenario():
        hub = Hub(look, interval=0.05)
        await asyncio.sleep(0.2)
        assert looks == [] and hub.pages == 0  # nobody subscribed: no look at all
        queues = [hub.subscribe() for _ in range(3)]
        got = [json.loads(await q.get()) for q in queues]
        assert got == [{"n": 1}] * 3  # one look, handed to every page
        await asyncio.sleep(0.5)
        shared = len(looks)
        assert 6 <= shared <= 13  # ~0.55 s / 0.05 s: once per interval, not once per page
        for q in queues:
            hub.unsubscribe(q)
        await asyncio.sleep(0.2)
        assert len(looks) <= shared + 1 and hub.polls == len(looks)  # the last page gone: it stops
        late = hub.subscribe()
        assert json.loads(await late.get())["n"] == len(looks)
        hub.close()
        while (item := await late.get()) is not None:
            pass
        assert item is None  # told to stop

    asyncio.run(scenario())


def _client_scenario(check):
    async def run():
        hub = Hub(lambda: {"time": 1.0, "hello": "<b>x</b>"}, interval=0.05)
        async with TestClient(TestServer(server.make_app(hub), host="127.0.0.1")) as client:
            await check(client, hub)
    asyncio.run(run())


def test_server_is_read_only_and_answers_loopback_names_only():
    async def check(client, hub):
        assert (await client.get("/")).status == 200
        for path in ("/", "/events", "/api/meta", "/static/dashboard.js", "/nowhere"):
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                answer = await client.request(method, path)
                assert answer.status == 405, (method, path)
        elsewhere = await client.get("/", headers={"Host": "rebind.example"})
        assert elsewhere.status == 403
        assert (await client.get("/", headers={"Host": "localhost:1"})).status == 200
    _client_scenario(check)


def test_page_and_assets_come_from_the_package_with_a_strict_policy():
    async def check(client, hub):
        page = await client.get("/")
        html = await page.text()
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        assert 'src="/static/dashboard.js"' in html and "http" not in html.replace("http-equiv", "")
        for asset in ("dashboard.js", "dashboard.css"):
            answer = await client.get(f"/static/{asset}")
            assert answer.status == 200 and "http://" not in (await answer.text()).replace(
                "http://www.w3.org/2000/svg", "")
        assert (await client.get("/static/../collect.py")).status in (403, 404)
    _client_scenario(check)


def test_events_stream_the_looks_and_the_meta_counts_pages():
    async def check(client, hub):
        assert await (await client.get("/api/meta")).json() == {"pages": 0, "polls": 0, "interval": 0.05}
        stream = await client.get("/events")
        assert stream.headers["Content-Type"] == "text/event-stream"
        line = await stream.content.readline()
        assert json.loads(line.decode().removeprefix("data: ")) == {"time": 1.0, "hello": "<b>x</b>"}
        assert (await (await client.get("/api/meta")).json())["pages"] == 1
        stream.close()
    _client_scenario(check)


def test_requests_history_restarts_after_a_pause_instead_of_one_huge_second(tmp_path):
    from types import SimpleNamespace

    from lab.dashboard.collect import GAP, Collector

    collector = Collector(SimpleNamespace(settings=SimpleNamespace(build_dir=tmp_path)), dc=None)

    def counts(**lbs):
        return {lb: dict(zip(("web1", "web2", "sorry"), n)) for lb, n in lbs.items()}

    assert collector._requests(100.0, counts(nlb=(10, 0, 0), alb=(5, 5, 0)))["history"] == []
    one = collector._requests(101.0, counts(nlb=(13, 1, 0), alb=(6, 5, 0)))
    assert one["history"] == [{"time": 101.0, "web1": 4, "web2": 1, "sorry": 0}] and one["sums"]["web1"] == 4
    missed = collector._requests(102.0, counts(nlb=(14, 1, 0)))  # the ALB did not answer this once
    assert missed["history"][-1] == {"time": 102.0, "web1": 1, "web2": 0, "sorry": 0}
    back = collector._requests(103.0, counts(nlb=(14, 1, 0), alb=(6, 5, 0)))
    assert back["history"][-1]["web1"] == 0  # not its whole count again
    reloaded = collector._requests(104.0, counts(nlb=(2, 1, 0), alb=(6, 5, 0)))  # counters from zero
    assert reloaded["history"][-1]["web1"] == 0
    paused = collector._requests(104.0 + GAP + 1, counts(nlb=(500, 1, 0), alb=(6, 5, 0)))
    assert paused["history"] == []  # 498 requests over a pause nobody watched are not one second's
