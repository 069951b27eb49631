"""JSON-lines files that survive a killed run: one reader and one appender for every append-only log.

Format: UTF-8, one JSON value per line, each line ended by a newline. A run killed mid-append leaves
at most one torn last line. The reader skips lines that are not JSON (and counts them), so a torn line
only costs the row it was writing. The appender repairs a torn tail before its first row (a tail
that is whole JSON lacking only its newline is kept, anything else is cut off), so new rows always
start on a line of their own, and it can fsync after every row. One writer per file at a time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common, outputs
from susx_cli.errors import SusxError


def scan_jsonl(path: Path) -> tuple[list[Any], int]:
    """(rows, number of unreadable lines) of a JSON-lines file; ([], 0) when it does not exist."""
    path = Path(path)
    if not path.exists():
        return [], 0
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SusxError(
            f"cannot read {path} ({exc.strerror or exc})", hint="check the file's permissions"
        ) from exc
    rows, bad = [], 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except (ValueError, UnicodeDecodeError):
            bad += 1
    return rows, bad


def read_jsonl(path: Path) -> list[Any]:
    """Rows of a JSON-lines file, unreadable (torn) lines skipped; [] when it does not exist."""
    return scan_jsonl(path)[0]


def write_jsonl(path: Path, rows: list[Any]) -> None:
    """Replace ``path`` with ``rows``, one per line, atomically (a reader sees the old file or the new)."""
    common.atomic_write_bytes(
        path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    )


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def repair_tail(path: Path, block: int = 1 << 16) -> None:
    """Make ``path`` end with a newline: keep a whole last row that lacks one, cut a torn one off."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        end = handle.seek(0, os.SEEK_END)
        handle.seek(end - 1)
        if handle.read(1) == b"\n":
            return
        start = end  # find where the last line begins
        while start > 0:
            step = min(block, start)
            handle.seek(start - step)
            chunk = handle.read(step)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                start = start - step + cut + 1
                break
            start -= step
        handle.seek(start)
        if _is_json(handle.read()):
            handle.write(b"\n")
        else:
            handle.truncate(start)
        handle.flush()
        os.fsync(handle.fileno())


class JsonlAppender:
    """Appends rows to a JSON-lines file (created with its folder when missing).

    ``append(row)`` writes and, with ``sync`` (the default), flushes and fsyncs, so a row that was
    appended is on disk; with ``sync=False`` rows are buffered until ``sync()``.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        with outputs.writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            repair_tail(self.path)
            self._handle = open(self.path, "ab")  # noqa: SIM115  (closed by close())

    def append(self, row: Any, *, sync: bool = True) -> None:
        with outputs.writing(self.path):
            self._handle.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
            if sync:
                self.sync()

    def flush(self) -> None:
        with outputs.writing(self.path):
            self._handle.flush()

    def sync(self) -> None:
        with outputs.writing(self.path):
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        if not self._handle.closed:
            with outputs.writing(self.path):  # the file is closed even when its last flush fails
                self._handle.close()

    @property
    def closed(self) -> bool:
        return self._handle.closed

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
