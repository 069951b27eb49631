"""CSV tables written for other tools (spreadsheets, pandas): UTF-8, one header row, written atomically."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from susx_cli.artifacts import common


def write_csv(path: Path, header: list[str], rows: Iterable[list[str]]) -> int:
    """Write ``header`` and ``rows`` (lists of strings) as CSV at ``path``, all or nothing; returns the rows."""
    count = 0
    with common.atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow(row)
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
    return count
