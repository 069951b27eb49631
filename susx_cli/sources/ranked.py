"""What the retrieval sources (laion, pool) share: query texts, interleaving, the summary table.

Their working files (candidates, attempt log, download rounds) live in ``artifacts.shard_state``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Any

from susx_cli.artifacts.prompts import PromptEntry, Prompts
from susx_cli.errors import SusxError
from susx_cli.sources.base import WorkUnit

QUERY_TEXTS = ("photo", "cupl")


def query_texts(entry: PromptEntry, which: str) -> list[str]:
    """The texts a class is searched with: its photo prompt, or its CuPL sentences."""
    if which == "photo":
        return [entry.photo]
    if which == "cupl":
        texts = [t for t in entry.cupl if t.strip()]
        if not texts:
            raise SusxError(
                f"class {entry.name!r} has no CuPL sentences to query with",
                hint="add them with `susx prompts --cupl ...`, or use --prompt-mode photo",
            )
        return texts
    raise SusxError(f"unknown --prompt-mode {which!r}", hint=f"use one of {', '.join(QUERY_TEXTS)}")


def class_units(prompts: Prompts, which: str) -> list[WorkUnit]:
    """One unit per class: a retrieval source ranks and fills a class as a whole, so shards split by class."""
    return [
        WorkUnit(e.index, 0, f"class-{e.index:05d}", {"texts": query_texts(e, which)}) for e in prompts.entries
    ]


def interleave(result_lists: list[list[dict[str, Any]]], limit: int, key: str = "url") -> list[dict[str, Any]]:
    """Round-robin over the result lists of several queries: first of each, then second of each, ...

    So that with CuPL sentences every sentence contributes its best results instead of the first
    sentence filling the quota. A candidate found by several queries keeps its first (best) place.
    """
    out: list[dict[str, Any]] = []
    seen: set[Any] = set()
    depth = max((len(r) for r in result_lists), default=0)
    for position in range(depth):
        for results in result_lists:
            if position >= len(results):
                continue
            row = results[position]
            ident = row.get(key)
            if ident is None or ident in seen:
                continue
            seen.add(ident)
            out.append(row)
            if len(out) >= limit:
                return out
    return out


def listing_fingerprint(paths: Iterable[str | os.PathLike]) -> str:
    """A cheap identity for a large file collection: sha256 of (path, size, mtime) lines."""
    digest = hashlib.sha256()
    for path in sorted(str(p) for p in paths):
        try:
            st = os.stat(path)
            digest.update(f"{path}\t{st.st_size}\t{int(st.st_mtime)}\n".encode())
        except OSError:
            digest.update(f"{path}\n".encode())
    return digest.hexdigest()


def summary_table(title: str, classes: list[str], stats: dict[int, dict[str, Any]], wanted: int) -> None:
    """Per-class success rate on stderr (hidden by --quiet)."""
    from rich.table import Table

    from susx_cli.progress import is_quiet, stderr

    if is_quiet() or not stats:
        return
    table = Table(title=title, title_justify="left")
    for col in ("class", "candidates", "tried", "kept", "failed", "invalid", "dup", "success"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for ci in sorted(stats):
        s = stats[ci]
        tried = s.get("tried", 0)
        good = s.get("valid", 0)
        rate = f"{100 * good / tried:.0f}%" if tried else "-"
        kept = f"{s.get('kept', 0)}/{wanted}"
        if s.get("kept", 0) < wanted:
            kept = f"[yellow]{kept}[/yellow]"
        table.add_row(
            classes[ci][:40], str(s.get("candidates", 0)), str(tried), kept, str(s.get("failed", 0)),
            str(s.get("invalid", 0)), str(s.get("duplicate", 0)), rate,
        )
    stderr.print(table)
