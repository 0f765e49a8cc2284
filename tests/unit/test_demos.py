"""The demo runner's verdict: a claim is observed only when checks ran and all passed."""

from rich.console import Console

from lab import demos


def _run_with(monkeypatch, body):
    monkeypatch.setattr(demos.compare, "clients_for", lambda stack, dc: {"nlb": object()})
    monkeypatch.setitem(demos.DEMOS, "probe-demo", (body, "a claim", ("nlb",)))
    console = Console(record=True, width=120)
    seen = demos.run("probe-demo", stack=None, dc=None, console=console)
    return seen, console.export_text()


def test_a_demo_that_checked_nothing_observed_nothing(monkeypatch):
    seen, text = _run_with(monkeypatch, lambda show: show.say("nothing to see"))
    assert not seen and "claim observed" not in text and "checked nothing" in text


def test_a_demo_with_a_failed_check_is_not_observed(monkeypatch):
    seen, text = _run_with(monkeypatch, lambda show: (show.check(True, "one"), show.check(False, "two")))
    assert not seen and "NOT seen: two" in text


def test_a_demo_whose_checks_all_passed_is_observed(monkeypatch):
    seen, text = _run_with(monkeypatch, lambda show: show.check(True, "one"))
    assert seen and "claim observed (1 checks)" in text
