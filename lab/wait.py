"""Waiting for a condition of the running lab, with a message that names what never came."""

from __future__ import annotations

import time

from .errors import NotReached, StackError


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; return that value.

    Raises:
        NotReached: naming ``what`` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, StackError) as exc:  # requests' errors are OSErrors too
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise NotReached(f"{what} not reached within {timeout:.0f}s (last: {last!r}): "
                     "see `lab status` and `lab logs`")
