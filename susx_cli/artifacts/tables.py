"""CSV tables written for other tools (spreadsheets, pandas): UTF-8, a first line ``# susx.KIND ...`` that
marks the file as susx's (pandas: ``read_csv(path, skiprows=1)``), one header row, written atomically."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from susx_cli.artifacts import common, outputs


def write_csv(path: Path, header: list[str], rows: Iterable[list[str]], *, kind: str) -> int:
    """Write ``header`` and ``rows`` (lists of strings) as CSV at ``path``, all or nothing, after the line
    that marks it as susx's file of ``kind`` (``outputs.text_mark``); returns the rows."""
    count = 0
    with common.atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(outputs.text_mark(kind, "csv"))
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow(row)
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
    return count
