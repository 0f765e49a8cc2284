"""What the user sees: one-line messages, spinners for long steps, streamed detail.

Three levels: quiet (-q: errors only), normal (a live spinner per long step), and
verbose (-v: every line the underlying tool prints). Everything goes to stderr so
stdout stays clean for --json and tables.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

HEARTBEAT = 10.0  # seconds between progress lines when there is no terminal


class Task:
    """A long step in progress: update its text, count its items."""

    def __init__(self, ui: "UI", description: str, status=None):
        self.ui = ui
        self.description = description
        self.status = status
        self.count = 0
        self.started = time.monotonic()
        self.last = ""
        self.failed = False
        self.next_heartbeat = self.started + HEARTBEAT

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, text: str) -> None:
        """One line of the tool's output: shown live, or printed when verbose."""
        text = text.rstrip()
        if not text:
            return
        self.last = text
        if self.ui.verbose:
            self.ui.console.print(f"  [dim]{escape(text)}[/]", highlight=False)
        self._refresh()

    def fail(self) -> None:
        """Mark the step as failed without raising (the caller goes on another way)."""
        self.failed = True

    def advance(self, n: int = 1) -> None:
        self.count += n
        self._refresh()

    def _refresh(self) -> None:
        if self.status is None:
            # No live display (CI log, pipe): a line every HEARTBEAT seconds shows it moves.
            now = time.monotonic()
            if not self.ui.quiet and not self.ui.verbose and now >= self.next_heartbeat:
                self.next_heartbeat = now + HEARTBEAT
                self.ui.console.print(f"  … {self.elapsed:.0f}s {escape(self.last[:100])}")
        else:
            counted = f" ({self.count})" if self.count else ""
            self.status.update(
                f"{escape(self.description)}{counted} [dim]{self.elapsed:4.0f}s  {escape(self.last[:70])}[/]")


class UI:
    """Console output at the chosen verbosity."""

    def __init__(self, quiet: bool = False, verbose: bool = False, console: Console | None = None):
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)

    def ok(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[green]✓[/] {message}")

    def warn(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[yellow]![/] {message}")

    def error(self, message: str) -> None:
        self.console.print(f"[red]error:[/] {escape(message)}")

    @contextmanager
    def task(self, description: str):
        """A long step: a spinner with elapsed time and the latest output line.

        The closing line says ✓, or ✗ when the block raised or called ``task.fail()``.
        """
        live = not (self.quiet or self.verbose or not self.console.is_terminal)
        if not live and not self.quiet:
            self.console.print(f"… {escape(description)}")
        ok = False
        try:
            if live:
                with self.console.status(escape(description)) as status:
                    task = Task(self, description, status)
                    yield task
            else:
                task = Task(self, description)
                yield task
            ok = not task.failed
        finally:
            if not self.quiet:
                mark = "[green]✓[/]" if ok else "[red]✗[/]"
                self.console.print(f"{mark} {escape(description)} [dim]({task.elapsed:.1f}s)[/]")
