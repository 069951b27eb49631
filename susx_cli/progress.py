"""How stages report progress: ``bar()``, ``info()`` and ``warn()`` delegate to the current reporter.

The default reporter is silent, so a Python caller (``from susx_cli.stages.calibrate import calibrate``)
gets no bars and no log lines on its terminal: ``info`` goes to the ``susx`` logger at INFO level and
``warn`` at WARNING level (where Python's logging shows it unless configured otherwise), so nothing that
means data was left out is lost. The CLI installs a ``RichReporter`` on stderr (stdout is for the paths
a stage wrote) for the duration of a command:

    with progress.reporting(progress.RichReporter(quiet=False)):
        calibrate(...)

The reporter is held in a context variable: code running in worker threads reports through the
thread that owns the bar (as the stages do), or runs under ``contextvars.copy_context()``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any, Protocol

log = logging.getLogger("susx")


class Bar(Protocol):
    def advance(self, n: float = 1) -> None: ...

    def update(self, **fields: Any) -> None: ...


class Reporter(Protocol):
    """What a stage may say while it runs; rendering is the reporter's business."""

    def info(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def bar(self, description: str, total: float | None, unit: str, completed: float) -> contextlib.AbstractContextManager[Bar]: ...


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
    def bar(self, description: str, total: float | None, unit: str = "it", completed: float = 0) -> Iterator[Bar]:
        yield _NoBar()


class RichReporter:
    """Bars and log lines on a rich console (stderr by default); ``quiet`` keeps only the warnings."""

    def __init__(self, quiet: bool = False, console: Any = None):
        from rich.console import Console

        self.quiet = quiet
        self.console = console if console is not None else Console(stderr=True, highlight=False)

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
    def bar(self, description: str, total: float | None, unit: str = "it", completed: float = 0) -> Iterator[Bar]:
        """A rich progress bar with rate (unit/s) and time left."""
        if self.quiet:
            yield _NoBar()
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


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Make ``reporter`` the one ``bar``/``info``/``warn`` use inside the block (the previous one after)."""
    token = _current.set(reporter)
    try:
        yield reporter
    finally:
        _current.reset(token)


def info(message: str) -> None:
    """A log line, hidden by --quiet."""
    current().info(message)


def warn(message: str) -> None:
    """A warning: something was left out or will not be what the user expects."""
    current().warn(message)


def bar(description: str, total: float | None, unit: str = "it", completed: float = 0) -> contextlib.AbstractContextManager[Bar]:
    """A progress bar (a no-op unless a reporter that draws bars is installed)."""
    return current().bar(description, total, unit, completed)
