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
