"""The cutover drill's judgement (lab/migrate.py), on probes written here: what counts as an
error, when a client moved, who was locked out; the drill itself runs in
tests/integration/test_migrate.py."""

from lab import migrate
from lab.answer import Answer
from lab.migrate import Drill, Probe


def test_served_refused_and_error():
    assert migrate.classify(Answer(200, {"backend": "web1"})) == "served"
    assert migrate.classify(Answer(200, {"backend": "cdn"})) == "error"   # the sorry site serves nobody
    assert migrate.classify(Answer(400, {"backend": "web1"})) == "refused"
    assert migrate.classify(Answer(0, error="curl: (28) timed out", curl_exit=28)) == "error"
    assert migrate.expected("alb", False) == "served" and migrate.expected("nlb", False) == "refused"
    assert migrate.expected("nlb", True) == "served"


def drill_of(rows, ttl=5):
    d = Drill(ttl, {"alice": "alice", "dave": None})
    for client, t, front, outcome in rows:
        named = f"CN={client},OU=clients" if front == "nlb" and outcome == "served" else ""
        d.record(Probe(client, t, front, outcome, backend="web1", identity=named))
    d.changes["cutover"] = {"at_s": 10.0, "to": "nlb", "dns_answer_after_s": 0.0}
    return d


def report_of(d):
    return {"phases": {"cutover": {"clients": migrate.phase_report(d, "cutover", 10.0, 30.0)}}}


def test_a_drill_as_expected_has_nothing_to_say():
    d = drill_of([("alice", 11, "alb", "served"), ("alice", 13, "nlb", "served"),
                  ("dave", 12, "alb", "served"), ("dave", 14, "nlb", "refused")])
    rows = report_of(d)["phases"]["cutover"]["clients"]
    assert rows["alice"]["moved_after_s"] == 3.0 and rows["dave"]["locked_out"] is True
    assert migrate.verdicts(report_of(d), d.bound_s) == []


def test_errors_late_moves_and_a_client_let_in_without_a_certificate_are_named():
    d = drill_of([("alice", 11, "alb", "error"), ("alice", 25, "nlb", "served"),
                  ("dave", 12, "nlb", "served")])
    bad = migrate.verdicts(report_of(d), d.bound_s)
    assert any("alice got 1 unexpected" in line for line in bad)
    assert any("alice moved after 15.0 s" in line for line in bad)   # bound 9 s with a TTL of 5
    assert any("dave has no certificate but was not locked out" in line for line in bad)


def test_a_client_that_never_moves_or_loses_its_stickiness_is_named():
    d = drill_of([("alice", 11, "alb", "served"), ("dave", 12, "nlb", "refused")])
    d.record(Probe("dave", 13, "nlb", "refused", backend="web2"))
    bad = migrate.verdicts(report_of(d), d.bound_s)
    assert any("alice moved after None" in line for line in bad)
    assert any("dave's stickiness did not hold on the nlb" in line for line in bad)


def test_an_answer_from_elsewhere_or_a_wrong_name_is_unexpected():
    d = drill_of([("alice", 11, "", "served"), ("alice", 13, "nlb", "served"),
                  ("dave", 12, "nlb", "refused")])
    d.record(Probe("alice", 14, "nlb", "served", backend="web1", identity="CN=bob,OU=clients"))
    bad = migrate.verdicts(report_of(d), d.bound_s)
    assert any("alice got 1 unexpected" in line for line in bad)  # no DNS answer: never right
    assert any("alice was not named by its certificate" in line for line in bad)
