"""A deregistration's record as `lab status` reads it when the NLB does not answer (no Docker)."""

import time

from lab import deregister
from lab.settings import Settings
from lab.stack import Stack


def stack_in(tmp_path) -> Stack:
    return Stack(Settings.from_env(env={"LAB_HOME": str(tmp_path), "LAB_PROJECT": "dereg-unit"}))


def test_no_record_no_row_and_no_question_to_haproxy(tmp_path):
    assert deregister.report(stack_in(tmp_path)) == []  # no socket exists: nothing was asked


def test_a_record_without_its_nlb_says_so_and_keeps_the_time_left(tmp_path):
    stack = stack_in(tmp_path)
    now = time.time()
    record = deregister.Record("web1", str(stack.control_socket()), "t0", now, now + 30, False,
                               {"pid": 9, "started": round(now)})
    deregister.folder(stack).mkdir(parents=True)
    deregister._save(deregister.folder(stack) / "web1.json", record)
    [row] = deregister.report(stack)
    assert row["backend"] == "web1" and row["state"] == "draining (the nlb does not answer)"
    assert 29 <= row["seconds_left"] <= 30 and row["termination"] is False and row["haproxy"] == "?"


def test_time_left_never_goes_below_zero():
    r = deregister.Record("web2", "/nowhere", "t", 0.0, 10.0, True, {"pid": 1, "started": 0})
    assert r.seconds_left(now=4.0) == 6.0 and r.seconds_left(now=99.0) == 0.0


def test_the_helper_says_why_it_could_not_end_the_delay(tmp_path, capsys):
    stack = stack_in(tmp_path)
    record = deregister.Record("web1", str(stack.control_socket()), "t1", time.time() - 1, time.time(), True,
                               {"pid": 9, "started": 0})
    deregister.folder(stack).mkdir(parents=True)
    path = deregister.folder(stack) / "web1.json"
    deregister._save(path, record)
    assert deregister._wait_out(path) == 1
    assert capsys.readouterr().out.startswith("web1: could not end the delay: no runtime API at ")
    assert deregister.load(path).phase == "draining"  # nothing pretends it ended


def test_the_helper_of_a_restored_target_does_nothing(tmp_path):
    assert deregister._wait_out(tmp_path / "web1.json") == 0  # its record is gone: restored
