"""Issue 12, item 3: when stderr is not a terminal, bars become plain progress lines at a fixed interval."""

from __future__ import annotations

import io
import re
from pathlib import Path

from susx_cli import progress
from tests.helpers import TINY, invoke, make_class_folders

LINE = re.compile(
    r"^embed images: (\d+)/(\d+) \((\d+\.\d)%\) ([\d,.]+|-) img/s, elapsed \d+:\d\d:\d\d, eta (\d+:\d\d:\d\d|-)$"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _console(terminal: bool):
    from rich.console import Console

    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=120, highlight=False), buf


def _embed_folder(tmp_path: Path) -> Path:
    make_class_folders(tmp_path / "imgs", ["apple", "mango"], 3)
    return tmp_path / "imgs"


def test_cli_stage_writes_plain_progress_lines_to_a_captured_stderr(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SUSX_PROGRESS_INTERVAL", "0")  # a line at every batch
    imgs = _embed_folder(tmp_path)
    result = invoke(
        "embed", imgs, "--unlabelled", "-o", tmp_path / "f.h5", "-b", "2", "--workers", "0", *TINY
    )
    err = result.stderr
    assert "\x1b" not in err and "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("embed images:")]
    assert len(lines) >= 3, err  # 6 images in batches of 2, plus the last line
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    done = [int(m.group(1)) for m in matches]
    assert done == sorted(done) and done[-1] == 6
    assert {int(m.group(2)) for m in matches} == {6}
    assert matches[-1].group(3) == "100.0" and matches[-1].group(5) == "0:00:00"


def test_quiet_shows_no_progress_lines(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SUSX_PROGRESS_INTERVAL", "0")
    imgs = _embed_folder(tmp_path)
    result = invoke("embed", imgs, "--unlabelled", "-o", tmp_path / "f.h5", "--workers", "0", "-q", *TINY)
    assert "embed images" not in result.stderr


def test_interval_is_respected_with_a_fake_clock():
    clock = FakeClock()
    console, buf = _console(terminal=False)
    reporter = progress.RichReporter(console=console, interval=30, clock=clock)
    with progress.reporting(reporter), progress.bar("search", total=1000, unit="cfg") as b:
        for _ in range(100):  # 10 s per 10 configurations: 1,000 s in all
            clock.now += 10
            b.advance(10)
    lines = buf.getvalue().splitlines()
    # one line each time 30 s have passed (at 30, 60, ..., 990 s), and the last one at 1,000 s
    assert len(lines) == 33 + 1
    assert lines[0] == "search: 30/1,000 (3.0%) 1.0 cfg/s, elapsed 0:00:30, eta 0:16:10"
    assert lines[-1] == "search: 1,000/1,000 (100.0%) 1.0 cfg/s, elapsed 0:16:40, eta 0:00:00"


def test_rate_counts_only_this_runs_work_and_unknown_totals_have_no_eta():
    clock = FakeClock()
    console, buf = _console(terminal=False)
    reporter = progress.RichReporter(console=console, interval=60, clock=clock)
    with reporter.bar("embed images", total=2000, unit="img", completed=1000) as b:  # resumed
        clock.now += 100
        b.advance(500)
    with reporter.bar("[bold]query kNN[/bold]", total=None, unit="query") as b:
        clock.now += 4
        b.update(completed=8)
    assert buf.getvalue().splitlines() == [
        "embed images: 1,500/2,000 (75.0%) 5.0 img/s, elapsed 0:01:40, eta 0:01:40",
        "query kNN: 8 query 2.0 query/s, elapsed 0:00:04",
    ]


def test_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SUSX_PROGRESS_INTERVAL", "5")
    assert progress.RichReporter(console=_console(False)[0]).interval == 5
    monkeypatch.setenv("SUSX_PROGRESS_INTERVAL", "soon")
    assert progress.RichReporter(console=_console(False)[0]).interval == progress.DEFAULT_INTERVAL_S


def test_a_terminal_console_still_gets_the_rich_bar():
    clock = FakeClock()
    console, buf = _console(terminal=True)
    reporter = progress.RichReporter(console=console, interval=0, clock=clock)
    with reporter.bar("embed images", total=4, unit="img") as b:
        b.advance(4)
    out = buf.getvalue()
    assert "\x1b" in out  # drawn with terminal control codes
    assert "━" in out and "4/4" in out
    assert not LINE.search(out)
    assert "elapsed" not in out
