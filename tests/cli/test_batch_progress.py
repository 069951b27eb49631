"""When stderr is not a terminal, bars become plain progress lines at a fixed interval, with a heartbeat
while nothing finishes; when it is a file (a batch job's log) every line starts with the time, nothing
wraps and no escape code reaches it."""

from __future__ import annotations

import contextlib
import io
import re
import time
from pathlib import Path

from susx_cli import __version__, progress
from tests.helpers import TINY, invoke, make_class_folders

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d (.*)$")

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


def test_a_line_before_the_first_finished_item_has_no_empty_rate():
    assert progress.progress_line("curate", 0, 40, "img", None, 30) == "curate: 0/40 (0.0%), elapsed 0:00:30"
    assert (
        progress.progress_line("query kNN", 0, None, "query", None, 5)
        == "query kNN: 0 query, elapsed 0:00:05"
    )


def _log_reporter(interval: float) -> tuple[progress.RichReporter, io.StringIO]:
    buf = io.StringIO()
    return progress.RichReporter(
        console=progress.log_console(progress.LogStream(buf)), interval=interval
    ), buf


def test_a_heartbeat_says_what_a_stage_without_progress_waits_on():
    reporter, buf = _log_reporter(interval=0.2)
    with reporter.bar("generate images (sd)", total=4, unit="img") as b:
        time.sleep(0.7)  # a slow first item: no advance at all
        b.update(detail="step 3/50 of batch 1")
        time.sleep(0.5)
        b.advance(4)
    lines = [STAMP.match(line) for line in buf.getvalue().splitlines()]
    assert all(lines), buf.getvalue()
    texts = [m.group(1) for m in lines]
    waiting_first = [t for t in texts if t.endswith("waiting on img 1/4")]
    waiting_step = [t for t in texts if t.endswith("waiting on step 3/50 of batch 1")]
    assert len(waiting_first) >= 2 and len(waiting_step) >= 1, texts
    assert all(t.startswith("generate images (sd): 0/4 (0.0%), elapsed 0:00:0") for t in waiting_first)
    assert texts[-1].startswith("generate images (sd): 4/4 (100.0%) ") and "waiting" not in texts[-1]


def test_a_line_written_while_an_item_is_under_way_names_its_step():
    clock = FakeClock()
    reporter, buf = _log_reporter(interval=30)
    reporter.clock = clock
    with reporter.bar("generate images (sd)", total=2, unit="img") as b:
        for step in range(1, 51):
            clock.now += 1
            b.update(detail=f"step {step}/50 of batch 1")  # each denoising step: a line every 30 s
        b.advance(2)
    texts = [STAMP.match(line).group(1) for line in buf.getvalue().splitlines()]
    assert texts[0] == "generate images (sd): 0/2 (0.0%), elapsed 0:00:30, waiting on step 30/50 of batch 1"
    assert texts[-1].startswith("generate images (sd): 2/2 (100.0%) ") and "waiting" not in texts[-1]


def test_no_heartbeat_when_the_interval_is_zero_or_on_a_terminal():
    reporter, buf = _log_reporter(interval=0)
    with reporter.bar("embed images", total=2, unit="img") as b:
        time.sleep(0.2)
        b.advance(2)
    assert "waiting" not in buf.getvalue()
    console, out = _console(terminal=True)
    with progress.RichReporter(console=console, interval=0.05).bar("embed images", total=2, unit="img") as b:
        time.sleep(0.2)
    assert "waiting" not in out.getvalue()


def test_the_log_stream_stamps_whole_lines_and_drops_escapes_and_redraws():
    buf = io.StringIO()
    stream = progress.LogStream(buf, stamp=lambda: "2026-01-02T03:04:05+00:00")
    stream.write("\x1b[36m(_run_shard pid=4242)\x1b[0m embed images: 2/6")  # how Ray forwards a worker line
    assert buf.getvalue() == ""  # the line has not ended yet
    stream.write(" (33.3%)\n\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\n 10%|#\r 20%|##\r\n\n")
    stream.write("no newline at the end")
    stream.finish()
    assert buf.getvalue().splitlines() == [
        "2026-01-02T03:04:05+00:00 (_run_shard pid=4242) embed images: 2/6 (33.3%)",
        "2026-01-02T03:04:05+00:00 link",
        "2026-01-02T03:04:05+00:00  10%|#",
        "2026-01-02T03:04:05+00:00  20%|##",
        "2026-01-02T03:04:05+00:00 no newline at the end",
    ]


def _logged(tmp_path: Path, *args) -> tuple[int, list[str]]:
    """Run the CLI in this process with stderr going to a file (as in a batch job); its lines."""
    from susx_cli.cli import app

    log = tmp_path / "job.err"
    with open(log, "w", encoding="utf-8") as err, contextlib.redirect_stderr(err):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            app([str(a) for a in args])
        code = 0
    text = log.read_text(encoding="utf-8")
    assert "\x1b" not in text and "\r" not in text
    return code, text.splitlines()


def test_a_log_file_starts_with_the_command_and_stamps_every_unwrapped_line(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SUSX_PROGRESS_INTERVAL", "0")
    monkeypatch.setenv("COLUMNS", "40")  # what a narrow job environment may say: no line wraps at it
    imgs = _embed_folder(tmp_path)
    _, lines = _logged(
        tmp_path, "embed", imgs, "--unlabelled", "-o", tmp_path / "f.h5", "-b", "2", "--workers", "0", *TINY
    )
    texts = [STAMP.match(line) for line in lines]
    assert all(texts), lines
    texts = [m.group(1) for m in texts]
    assert texts[0] == (
        f"start: susx embed {imgs} --unlabelled -o {tmp_path / 'f.h5'} -b 2 --workers 0 {' '.join(TINY)} "
        f"(susx {__version__}); inputs: {imgs.resolve()}"
    )
    assert "device: cpu" in texts
    progress_lines = [t for t in texts if t.startswith("embed images:")]
    assert progress_lines and all(LINE.match(t) for t in progress_lines), texts
    # a refusal with a long path stays one line, whole
    missing = tmp_path / ("a folder with a long name that would wrap " * 3).strip() / "classes.txt"
    _, lines = _logged(tmp_path, "prompts", "-c", missing, "-o", tmp_path / "p.json")
    assert len(lines) == 2 and all(STAMP.match(line) for line in lines), lines
    assert f"error: class file {missing} does not exist (hint: " in lines[1]


def test_quiet_keeps_the_start_line_out_of_the_log(tmp_path: Path):
    _, lines = _logged(tmp_path, "datasets", "list", "-q")
    assert lines == []


def test_notes_are_for_logs_only():
    console, buf = _console(terminal=True)
    reporter = progress.RichReporter(console=console)
    with progress.reporting(reporter):
        progress.note("device: cpu")
    assert buf.getvalue() == ""
    reporter, buf = _log_reporter(interval=30)
    with progress.reporting(reporter):
        progress.note("device: cpu")
        progress.note("device: cpu")  # eval resolves the device once per run: the log says it once
    assert [STAMP.match(line).group(1) for line in buf.getvalue().splitlines()] == ["device: cpu"]


def test_sd_generation_reports_each_denoising_step():
    from susx_cli.adapters import diffusers

    seen = []

    class Pipe:
        def __call__(self, prompt, num_inference_steps, callback_on_step_end=None, **kwargs):
            for step in range(num_inference_steps):
                assert callback_on_step_end(self, step, 999 - step, {"latents": 0}) == {"latents": 0}

    keywords = diffusers._step_callback(Pipe(), lambda done, steps: seen.append((done, steps)), 3)
    Pipe()(["a"], 3, **keywords)
    assert seen == [(1, 3), (2, 3), (3, 3)]

    class OldPipe:
        def __call__(self, prompt, num_inference_steps, **kwargs):
            pass

    assert diffusers._step_callback(OldPipe(), lambda done, steps: None, 3) == {}
