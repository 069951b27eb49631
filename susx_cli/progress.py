"""How stages report progress: ``bar()``, ``info()`` and ``warn()`` delegate to the current reporter.

The default reporter is silent, so a Python caller (``from susx_cli.stages.calibrate import calibrate``)
gets no bars and no log lines on its terminal: ``info`` goes to the ``susx`` logger at INFO level and
``warn`` at WARNING level (where Python's logging shows it unless configured otherwise), so nothing that
means data was left out is lost. The CLI installs a ``RichReporter`` on stderr (stdout is for the paths
a stage wrote) for the duration of a command:

    with progress.reporting(progress.RichReporter(quiet=False)):
        calibrate(...)

On a terminal a bar is a live rich bar; when stderr is not a terminal (a SLURM log, ``2> log``) the same
bar writes one plain line every ``SUSX_PROGRESS_INTERVAL`` seconds (30 by default), whether or not an item
finished (a heartbeat that says what the stage waits on), and one when it ends:

    embed images: 1,200/50,000 (2.4%) 85.3 img/s, elapsed 0:00:14, eta 0:09:31
    generate images (sd): 0/400 (0.0%), elapsed 0:00:30, waiting on step 12/50 of batch 1

When stderr is a file or a pipe (a batch job's log) the reporter writes a log: every line starts with an
ISO-8601 time, nothing wraps, tables keep their full width, and no ANSI escape reaches the file, also not
from other writers of ``sys.stderr`` during a command (Ray's forwarded worker lines): see ``LogStream``.

The reporter is held in a context variable: code running in worker threads reports through the
thread that owns the bar (as the stages do), or runs under ``contextvars.copy_context()``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import io
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

log = logging.getLogger("susx")

INTERVAL_ENV = "SUSX_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0
# A log console is this wide, so that nothing wraps; tables are printed at the width of their content.
LOG_WIDTH = 100_000
# CSI sequences (colours, cursor moves), OSC sequences (links, titles) and two-byte escapes.
ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


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

    def note(self, message: str) -> None:
        log.info(message)

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
    """One plain progress line: done/total (percent), rate, elapsed and, with a total and a rate, eta.
    Before the first item of this run finished there is no rate, and the line says none."""
    if total:
        head = f"{description}: {done:,.0f}/{total:,.0f} ({100 * done / total:.1f}%)"
    else:
        head = f"{description}: {done:,.0f} {unit}"
    if not rate:
        return f"{head}, elapsed {_clock_text(elapsed)}"
    line = f"{head} {rate:,.1f} {unit}/s, elapsed {_clock_text(elapsed)}"
    if total:
        line += f", eta {_clock_text(max(total - done, 0) / rate)}"
    return line


class PlainBar:
    """A bar for logs: a line every ``interval`` seconds of ``clock`` (and one at ``finish``), no escapes.

    The rate counts only the work done since the bar started (a resumed run's ``completed`` is not
    work of this run). ``start_heartbeat`` adds a thread that writes the line when ``interval`` passes
    without one, naming what the stage waits on: ``update(detail=...)`` (e.g. a denoising step, cleared
    when an item finishes), else the next item."""

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
        self.detail: str | None = None
        self._start = self._last = clock()
        self._last_real = time.monotonic()
        self._written: float | None = None  # the count the last line showed
        self._lock = threading.Lock()  # the heartbeat thread writes too
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def advance(self, n: float = 1) -> None:
        with self._lock:
            self.completed += n
            self.detail = None
        self._maybe_write()

    def update(self, **fields: Any) -> None:
        """The fields rich's ``Progress.update`` takes that matter here (completed, total, advance,
        description) and ``detail``, what the current item waits on."""
        with self._lock:
            if "description" in fields:
                self.description = _plain_text(fields["description"])
            if "total" in fields:
                self.total = fields["total"]
            if "completed" in fields:
                self.completed = fields["completed"]
            if "advance" in fields:
                self.completed += fields["advance"]
                self.detail = None
            if "detail" in fields:
                self.detail = fields["detail"]
        self._maybe_write()

    def start_heartbeat(self) -> None:
        """Write a line (at most) every ``interval`` seconds of real time until ``finish``."""
        if self._interval > 0:
            self._heartbeat = threading.Thread(target=self._beat, name="susx-heartbeat", daemon=True)
            self._heartbeat.start()

    def _beat(self) -> None:
        # Real time, whatever ``clock`` is: a test's fake clock jumps, and this thread must not race it.
        while not self._stop.wait(max(self._interval - (time.monotonic() - self._last_real), 0.01)):
            with self._lock:
                if time.monotonic() - self._last_real >= self._interval:
                    self._emit(self._clock(), waiting=True)

    def finish(self) -> None:
        """The last line, where the bar stopped (unless a line showed that count less than a second ago)."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        with self._lock:
            now = self._clock()
            if self._written != self.completed or now - self._last >= 1:
                self._write(self._line(now))

    def _maybe_write(self) -> None:
        with self._lock:
            now = self._clock()
            if now - self._last >= self._interval:
                self._emit(now, waiting=False)

    def _emit(self, now: float, waiting: bool) -> None:
        line = self._line(now)
        self._last, self._last_real, self._written = now, time.monotonic(), self.completed
        waits_on = self.detail or (self._next_item() if waiting else None)
        self._write(f"{line}, waiting on {waits_on}" if waits_on else line)

    def _line(self, now: float) -> str:
        elapsed = now - self._start
        done_here = self.completed - self._start_completed
        rate = done_here / elapsed if elapsed > 0 and done_here > 0 else None
        return progress_line(self.description, self.completed, self.total, self.unit, rate, elapsed)

    def _next_item(self) -> str:
        of = f"/{self.total:,.0f}" if self.total else ""
        return f"{self.unit} {self.completed + 1:,.0f}{of}"


def now_stamp() -> str:
    """This moment as ISO-8601 local time with its UTC offset, to the second: 2026-12-07T12:35:42+00:00."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def is_log_stream(stream: Any) -> bool:
    """Whether ``stream`` is a file or a pipe that is not a terminal (a batch job's log, ``2> log``,
    ``| tee``). A stream without a file descriptor (a test runner's buffer) is not one."""
    try:
        return not os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


class LogStream(io.TextIOBase):
    """A text stream for batch logs in front of ``target``: what is written reaches it as whole lines,
    each starting with an ISO-8601 time (``stamp``; none when it is None), without ANSI escapes; a
    carriage return (a redrawn progress bar) ends a line too, and empty lines are dropped. Safe to write
    from several threads (the heartbeat, Ray's log forwarding thread)."""

    def __init__(self, target: Any, stamp: Callable[[], str] | None = now_stamp):
        super().__init__()
        self._target, self._stamp = target, stamp
        self._pending = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:
        return getattr(self._target, "encoding", None) or "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._pending = re.split(r"\r\n|\r|\n", self._pending + text)
            self._write_lines(lines)
        return len(text)

    def flush(self) -> None:
        """Flushes the target; a line not yet ended waits for its end (``print`` writes it in pieces)."""
        with self._lock:
            self._target.flush()

    def finish(self) -> None:
        """Write a last line that was never ended."""
        with self._lock:
            pending, self._pending = self._pending, ""
            self._write_lines([pending])
            self._target.flush()

    def _write_lines(self, lines: list[str]) -> None:
        out = []
        for line in lines:
            line = ANSI_ESCAPE.sub("", line).rstrip()
            if line:
                out.append(f"{self._stamp()} {line}\n" if self._stamp is not None else f"{line}\n")
        if out:
            self._target.write("".join(out))
            self._target.flush()


def log_console(stream: Any) -> Any:
    """A rich console for a batch log on ``stream`` (a ``LogStream``): no colour, no wrapping."""
    from rich.console import Console

    return Console(
        file=stream,
        width=LOG_WIDTH,
        soft_wrap=True,
        color_system=None,
        force_terminal=False,
        force_jupyter=False,
        highlight=False,
        emoji=False,
    )


class RichReporter:
    """Bars and log lines on a rich console (stderr by default); ``quiet`` keeps only the warnings.

    Bars are live on a terminal and plain timed lines otherwise (``interval`` seconds apart, by default
    from ``SUSX_PROGRESS_INTERVAL``; ``clock`` is injectable for tests). When stderr is a file or a pipe
    the console writes through a ``LogStream`` (time-stamped unless ``stamps`` is False: a Ray task's
    lines, which the driver stamps) and the reporter adds what a batch log needs (``note``)."""

    def __init__(
        self,
        quiet: bool = False,
        console: Any = None,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        stamps: bool = True,
    ):
        from rich.console import Console

        self.quiet = quiet
        if console is None and is_log_stream(sys.stderr):
            console = log_console(LogStream(sys.stderr, now_stamp if stamps else None))
        self.console = console if console is not None else Console(stderr=True, highlight=False)
        self.log: LogStream | None = self.console.file if isinstance(self.console.file, LogStream) else None
        self.interval = interval_from_env() if interval is None else interval
        self.clock = clock
        self._noted: set[str] = set()

    @contextlib.contextmanager
    def owning_stderr(self) -> Iterator[None]:
        """In a batch log, send every other write to ``sys.stderr`` in the block (Ray's forwarded worker
        lines, library warnings) through the same stamped, escape-free stream."""
        if self.log is None:
            yield
            return
        try:
            with contextlib.redirect_stderr(self.log):
                yield
        finally:
            self.log.finish()

    def _print(self, renderable: Any) -> None:
        # Off a terminal nothing wraps: a grep for a failure finds the whole line.
        self.console.print(renderable, soft_wrap=not self.console.is_terminal)

    def info(self, message: str) -> None:
        """A log line (rich markup allowed), hidden by --quiet."""
        if not self.quiet:
            self._print(message)

    def note(self, message: str) -> None:
        """A fact a batch log records once (the command line, the device); hidden by --quiet and on a
        terminal, where the user sees the command they typed."""
        if self.log is not None and not self.quiet and message not in self._noted:
            from rich.text import Text

            self._noted.add(message)
            self._print(Text(message))

    def warn(self, message: str) -> None:
        """Shown even with --quiet, because it means something was left out."""
        from rich.markup import escape

        self.console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)

    def error(self, message: str) -> None:
        from rich.markup import escape

        self.console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)

    def show(self, renderable: Any) -> None:
        """A table or other rich renderable, hidden by --quiet; off a terminal at the full width of its
        content (no column squeezed, no name cut short)."""
        if self.quiet or renderable is None:
            return
        if self.console.is_terminal:
            self.console.print(renderable)
            return
        from rich.measure import Measurement

        console = self.console
        wanted = Measurement.get(console, console.options.update_width(LOG_WIDTH), renderable).maximum
        width = console.width
        console.width = max(width, wanted)
        try:
            console.print(renderable)
        finally:
            console.width = width

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
        bar.start_heartbeat()
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


def note(message: str) -> None:
    """A fact a batch log records once (the device a command runs on); nothing on a terminal."""
    reporter = current()
    getattr(reporter, "note", reporter.info)(message)  # a reporter of the caller's own may have no notes


def bar(
    description: str, total: float | None, unit: str = "it", completed: float = 0
) -> contextlib.AbstractContextManager[Bar]:
    """A progress bar (a no-op unless a reporter that draws bars is installed)."""
    return current().bar(description, total, unit, completed)
