"""One look at the lab per interval, shared by every open page, and none while no page is
open: the first page to subscribe starts the poller, the last to leave stops it."""

from __future__ import annotations

import asyncio
import json
from typing import Callable

INTERVAL = 1.0  # seconds between looks while a page is open
QUEUE = 2       # looks held for a slow page before the oldest is dropped


class Hub:
    """Runs ``look`` (a blocking function returning JSON-ready data) in a worker thread once
    per ``interval`` while at least one subscriber listens, and hands each result, as JSON
    text, to every subscriber."""

    def __init__(self, look: Callable[[], dict], interval: float = INTERVAL):
        self._look = look
        self.interval = interval
        self._queues: set[asyncio.Queue] = set()
        self._task: asyncio.Task | None = None
        self.latest: str | None = None  # the last look, given to a page as it opens
        self.polls = 0                  # looks taken so far (GET /api/meta shows it)

    @property
    def pages(self) -> int:
        """Subscribers now (open pages)."""
        return len(self._queues)

    def subscribe(self) -> asyncio.Queue:
        """A queue of looks (JSON text; None: the dashboard is stopping); starts the poller."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE)
        if self._task is not None and self.latest is not None:
            queue.put_nowait(self.latest)
        self._queues.add(queue)
        if self._task is None:
            self.latest = None  # a look from before the pause is stale
            self._task = asyncio.get_running_loop().create_task(self._run())
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        """Forget ``queue``; the last one gone stops the poller."""
        self._queues.discard(queue)
        if not self._queues and self._task is not None:
            self._task.cancel()
            self._task = None

    def close(self) -> None:
        """Tell every subscriber the dashboard stops; stop the poller."""
        for queue in list(self._queues):
            _offer(queue, None)
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queues:
            started = loop.time()
            data = await loop.run_in_executor(None, self._look)
            self.polls += 1
            self.latest = json.dumps(data, separators=(",", ":"))
            for queue in list(self._queues):
                _offer(queue, self.latest)
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))


def _offer(queue: asyncio.Queue, item) -> None:
    """Put ``item``, dropping the oldest look of a page that has not read it yet."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)
