"""Progress bars and messages on stderr (stdout is for the paths a stage wrote)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_state = {"quiet": False}
stderr = Console(stderr=True, highlight=False)


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def is_quiet() -> bool:
    return _state["quiet"]


def info(message: str) -> None:
    """A log line on stderr, hidden by --quiet."""
    if not _state["quiet"]:
        stderr.print(message)


def warn(message: str) -> None:
    """A warning on stderr; shown even with --quiet, because it means something was left out."""
    from rich.markup import escape

    stderr.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None):
        self._progress, self._task = progress, task

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, **fields) -> None:
        if self._progress is not None:
            self._progress.update(self._task, **fields)


@contextlib.contextmanager
def bar(description: str, total: float | None, unit: str = "it", completed: float = 0) -> Iterator[_Bar]:
    """A rich progress bar with rate (unit/s) and time left; a no-op with --quiet."""
    if _state["quiet"]:
        yield _Bar(None, None)
        return
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

    with _RateProgress(*columns, console=stderr, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=completed, rate="")
        yield _Bar(progress, task)
