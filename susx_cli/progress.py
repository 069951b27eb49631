"""How stages report progress: ``bar()``, ``info()`` and ``warn()`` delegate to the current reporter.

The default reporter is silent, so a Python caller (``from susx_cli.stages.calibrate import calibrate``)
gets no bars and no log lines on its terminal: ``info`` goes to the ``susx`` logger at INFO level and
``warn`` at WARNING level (where Python's logging shows it unless configured otherwise), so nothing that
means data was left out is lost. The CLI installs a ``RichReporter`` on stderr (stdout is for the paths
a stage wrote) for the duration of a command:

    with progress.reporting(progress.RichReporter(quiet=False)):
        calibrate(...)

On a terminal a bar is a live rich bar; when stderr is not a terminal (a SLURM log, ``2> log``) the same
bar writes one plain line every ``SUSX_PROGRESS_INTERVAL`` seconds (30 by default) and one when it ends:

    embed images: 1,200/50,000 (2.4%) 85.3 img/s, elapsed 0:00:14, eta 0:09:31

The reporter is held in a context variable: code running in worker threads reports through the
thread that owns the bar (as the stages do), or runs under ``contextvars.copy_context()``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

log = logging.getLogger("susx")

INTERVAL_ENV = "SUSX_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0


class Bar(Protocol):
    def advance(self, n: float = 1) -> None: ...

    def update(self, **fields: Any) -> None: ...


class Reporter(Protocol):
    """What a stage may say while it runs; rendering is the reporter's business."""

    def info(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def bar(
        self, description: str, total: float | None, unit: str, completed: float
    ) -> contextlib.AbstractContextManager[Bar]: ...


class _NoBar:
    def advance(self, n: float = 1) -> None:
        pass

    def update(self, **fields: Any) -> None:
        pass


class NullReporter:
    """No output of its own: info and warnings go to the ``susx`` logger."""

    def info(self, message: str) -> None:
        log.info(message)

    def warn(self, message: str) -> None:
        log.warning(message)

    @contextlib.contextmanager
    def bar(
        self, description: str, total: float | None, unit: str = "it", completed: float = 0
    ) -> Iterator[Bar]:
        yield _NoBar()


def interval_from_env(default: float = DEFAULT_INTERVAL_S) -> float:
    """Seconds between plain progress lines: ``SUSX_PROGRESS_INTERVAL`` if it is a number >= 0, else ``default``."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if value >= 0 else default


def _clock_text(seconds: float) -> str:
    """0:09:31 (hours are not capped: 27:46:40)."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def progress_line(
    description: str, done: float, total: float | None, unit: str, rate: float | None, elapsed: float
) -> str:
    """One plain progress line: done/total (percent), rate, elapsed and, with a total and a rate, eta."""
    if total:
        head = f"{description}: {done:,.0f}/{total:,.0f} ({100 * done / total:.1f}%)"
    else:
        head = f"{description}: {done:,.0f} {unit}"
    rate_text = f"{rate:,.1f} {unit}/s" if rate else f"- {unit}/s"
    line = f"{head} {rate_text}, elapsed {_clock_text(elapsed)}"
    if total:
        eta = _clock_text(max(total - done, 0) / rate) if rate else "-"
        line += f", eta {eta}"
    return line


class PlainBar:
    """A bar for logs: a line every ``interval`` seconds of ``clock`` (and one at ``finish``), no escapes.

    The rate counts only the work done since the bar started (a resumed run's ``completed`` is not
    work of this run)."""

    def __init__(
        self,
        write: Callable[[str], None],
        description: str,
        total: float | None,
        unit: str,
        completed: float,
        interval: float,
        clock: Callable[[], float],
    ):
        self._write, self._clock, self._interval = write, clock, interval
        self.description, self.total, self.unit = _plain_text(description), total, unit
        self.completed = self._start_completed = completed
        self._start = self._last = clock()
        self._written: tuple[float, float] | None = None  # (completed, time) of the last line

    def advance(self, n: float = 1) -> None:
        self.completed += n
        self._maybe_write()

    def update(self, **fields: Any) -> None:
        """The fields rich's ``Progress.update`` takes that matter here: completed, total, advance, description."""
        if "description" in fields:
            self.description = _plain_text(fields["description"])
        if "total" in fields:
            self.total = fields["total"]
        if "completed" in fields:
            self.completed = fields["completed"]
        if "advance" in fields:
            self.completed += fields["advance"]
        self._maybe_write()

    def finish(self) -> None:
        """The last line, always (unless the line just written says the same): where the bar stopped."""
        now = self._clock()
        if self._written != (self.completed, now):
            self._emit(now)

    def _maybe_write(self) -> None:
        now = self._clock()
        if now - self._last >= self._interval:
            self._emit(now)

    def _emit(self, now: float) -> None:
        self._last, self._written = now, (self.completed, now)
        elapsed = now - self._start
        done_here = self.completed - self._start_completed
        rate = done_here / elapsed if elapsed > 0 and done_here > 0 else None
        self._write(progress_line(self.description, self.completed, self.total, self.unit, rate, elapsed))


class RichReporter:
    """Bars and log lines on a rich console (stderr by default); ``quiet`` keeps only the warnings.

    Bars are live on a terminal and plain timed lines otherwise (``interval`` seconds apart, by default
    from ``SUSX_PROGRESS_INTERVAL``; ``clock`` is injectable for tests)."""

    def __init__(
        self,
        quiet: bool = False,
        console: Any = None,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        from rich.console import Console

        self.quiet = quiet
        self.console = console if console is not None else Console(stderr=True, highlight=False)
        self.interval = interval_from_env() if interval is None else interval
        self.clock = clock

    def info(self, message: str) -> None:
        """A log line (rich markup allowed), hidden by --quiet."""
        if not self.quiet:
            self.console.print(message)

    def warn(self, message: str) -> None:
        """Shown even with --quiet, because it means something was left out."""
        from rich.markup import escape

        self.console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)

    def error(self, message: str) -> None:
        from rich.markup import escape

        self.console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)

    def show(self, renderable: Any) -> None:
        """A table or other rich renderable, hidden by --quiet."""
        if not self.quiet and renderable is not None:
            self.console.print(renderable)

    @contextlib.contextmanager
    def bar(
        self, description: str, total: float | None, unit: str = "it", completed: float = 0
    ) -> Iterator[Bar]:
        """A rich progress bar with rate (unit/s) and time left; plain timed lines when not on a terminal."""
        if self.quiet:
            yield _NoBar()
            return
        if not self.console.is_terminal:
            yield from self._plain_bar(description, total, unit, completed)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ]

        class _RateProgress(Progress):
            def get_renderables(self):
                for task in self.tasks:
                    speed = task.finished_speed or task.speed
                    task.fields["rate"] = f"{speed:,.1f} {unit}/s" if speed else f"- {unit}/s"
                yield from super().get_renderables()

        with _RateProgress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task(description, total=total, completed=completed, rate="")
            yield _RichBar(progress, task)

    def _plain_bar(self, description: str, total: float | None, unit: str, completed: float) -> Iterator[Bar]:
        from rich.text import Text

        def write(line: str) -> None:
            self.console.print(Text(line), soft_wrap=True)  # Text: brackets in names are not markup

        bar = PlainBar(write, description, total, unit, completed, self.interval, self.clock)
        try:
            yield bar
        finally:
            bar.finish()


def _plain_text(markup: str) -> str:
    """The text of a rich markup string (a bar's description is markup on the live bar)."""
    from rich.errors import MarkupError
    from rich.text import Text

    try:
        return Text.from_markup(markup).plain
    except MarkupError:
        return markup


class _RichBar:
    def __init__(self, progress: Any, task: Any):
        self._progress, self._task = progress, task

    def advance(self, n: float = 1) -> None:
        self._progress.advance(self._task, n)

    def update(self, **fields: Any) -> None:
        self._progress.update(self._task, **fields)


NULL = NullReporter()
_current: contextvars.ContextVar[Reporter] = contextvars.ContextVar("susx_reporter", default=NULL)


def current() -> Reporter:
    return _current.get()


def install(reporter: Reporter) -> contextvars.Token:
    """Make ``reporter`` current until ``uninstall(token)``: a notebook's choice for every later cell,
    where no ``with reporting(...)`` block can span the cells."""
    return _current.set(reporter)


def uninstall(token: contextvars.Token) -> None:
    """Restore the reporter that was current before ``install`` returned ``token``."""
    _current.reset(token)


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Make ``reporter`` the one ``bar``/``info``/``warn`` use inside the block (the previous one after)."""
    token = install(reporter)
    try:
        yield reporter
    finally:
        uninstall(token)


def info(message: str) -> None:
    """A log line, hidden by --quiet."""
    current().info(message)


def warn(message: str) -> None:
    """A warning: something was left out or will not be what the user expects."""
    current().warn(message)


def bar(
    description: str, total: float | None, unit: str = "it", completed: float = 0
) -> contextlib.AbstractContextManager[Bar]:
    """A progress bar (a no-op unless a reporter that draws bars is installed)."""
    return current().bar(description, total, unit, completed)
