"""Fault-injection harness: run one CLI case in a copy of a prepared workspace and classify the outcome.

Outcomes:
- ``clear``: non-zero exit with a one-line ``error: ...`` on stderr that names the expected fragment;
- ``ok``: exit 0 (a valid control, or a case that must succeed, e.g. a correct skip);
- ``traceback``: an exception escaped the CLI;
- ``silent``: exit 0 where an error was expected (a silently accepted bad input or wrong result);
- ``unclear``: non-zero exit, but not one clear line naming the problem;
- ``hang``: the case ran past its time limit;
- ``data_lost``: a file that was in the workspace before the case changed or vanished, when the case
  was not allowed to change it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

OUTCOMES = ("clear", "ok", "traceback", "silent", "unclear", "hang", "data_lost")


@dataclass(frozen=True)
class Case:
    """One bad input or fault: the command (``{ws}``-free, run inside the workspace), a setup that
    plants the fault, the expected exit code and message fragment, and which paths may change."""

    id: str
    args: tuple[str, ...]
    expect_exit: int = 2
    message: str = ""
    setup: Callable[[Path], None] | None = None
    may_change: tuple[str, ...] = ()
    timeout_s: int = 120
    issue_item: str = ""

    @property
    def expects_error(self) -> bool:
        return self.expect_exit != 0


@dataclass
class Outcome:
    kind: str
    exit_code: int | None = None
    stderr: str = ""
    detail: str = ""
    changed: list[str] = field(default_factory=list)


class _Hang(BaseException):
    """Raised from SIGALRM; a BaseException so no `except Exception` in the code under test eats it."""


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Relative path -> (sha256 or link target, mode) of every file and link under ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link:" + os.readlink(path), 0)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[rel] = (digest, stat.S_IMODE(path.stat().st_mode))
    return out


def _allowed(rel: str, patterns: tuple[str, ...]) -> bool:
    return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in patterns)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def run_case(case: Case, ws: Path) -> Outcome:
    """Run ``case`` in workspace ``ws`` (the current directory while it runs) and classify it."""
    from typer.testing import CliRunner

    from susx_cli.cli import app

    if case.setup is not None:
        case.setup(ws)
    before = snapshot(ws)
    old_cwd = Path.cwd()
    os.chdir(ws)

    def on_alarm(signum, frame):
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(case.timeout_s)
    try:
        result = CliRunner().invoke(app, list(case.args), catch_exceptions=True)
    except _Hang:
        return Outcome("hang", detail=f"over {case.timeout_s} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(old_cwd)
    stderr = result.stderr if hasattr(result, "stderr") else ""
    after = snapshot(ws)
    lost = sorted(
        rel for rel, sig in before.items() if after.get(rel) != sig and not _allowed(rel, case.may_change)
    )
    outcome = Outcome("ok", exit_code=result.exit_code, stderr=stderr, changed=lost)
    if isinstance(result.exception, _Hang):
        outcome.kind, outcome.detail = "hang", f"over {case.timeout_s} s"
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        outcome.kind = "traceback"
        outcome.detail = f"{result.exception.__class__.__name__}: {result.exception}"[:300]
    elif lost:
        outcome.kind, outcome.detail = "data_lost", ", ".join(lost[:5])
    elif result.exit_code == 0:
        outcome.kind = "silent" if case.expects_error else "ok"
    else:
        lines = error_lines(stderr)
        clear = (
            len(lines) == 1
            and case.message.lower() in lines[0].lower()
            and result.exit_code == case.expect_exit
        )
        outcome.kind = "clear" if clear else "unclear"
        if not clear:
            outcome.detail = f"exit {result.exit_code}; error lines: {lines[:3]!r}"
    return outcome
