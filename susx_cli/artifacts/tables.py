"""CSV tables written for other tools (spreadsheets, pandas): UTF-8, a first line ``# susx.KIND ...`` that
marks the file as susx's (pandas: ``read_csv(path, skiprows=1)``), one header row, written atomically."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

from susx_cli.artifacts import common, outputs


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


def marked_csv_text(header: list[str], rows: Iterable[list[str]], *, kind: str) -> tuple[str, int]:
    """The whole file susx writes for a table of ``kind``: its mark line (``outputs.text_mark``), then the CSV."""
    text, count = csv_text(header, rows)
    return outputs.text_mark(kind, "csv") + text, count


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


def write_csv(path: Path, header: list[str], rows: Iterable[list[str]], *, kind: str) -> int:
    """Write ``header`` and ``rows`` as susx's CSV file of ``kind`` at ``path``, all or nothing; returns the rows."""
    text, count = marked_csv_text(header, rows, kind=kind)
    write_text(path, text)
    return count
