"""CSV tables written for other tools (spreadsheets, pandas): UTF-8, one header row, written atomically."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

from susx_cli.artifacts import common


def csv_text(header: list[str], rows: Iterable[list[str]], line_end: str = "\r\n") -> tuple[str, int]:
    """``header`` and ``rows`` (lists of strings) as CSV text (RFC 4180 line ends unless told); returns the
    text and the number of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=line_end)
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return buffer.getvalue(), count


def holds_text(path: Path, text: str) -> bool:
    """Whether ``path`` is a file whose bytes are exactly ``text`` in UTF-8."""
    data = text.encode("utf-8")
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) at ``path``, all or nothing."""
    with common.atomic_path(path, suffix=path.suffix or ".csv") as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def write_csv(path: Path, header: list[str], rows: Iterable[list[str]]) -> int:
    """Write ``header`` and ``rows`` (lists of strings) as CSV at ``path``, all or nothing; returns the rows."""
    text, count = csv_text(header, rows)
    write_text(path, text)
    return count
