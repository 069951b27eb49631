"""What the retrieval sources (laion, pool) share: query texts, interleaving, per-class stats.

Their working files (candidates, attempt log, download rounds) live in ``artifacts.shard_state``."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable
from typing import Any

from susx_cli.artifacts import common
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
        WorkUnit(e.index, 0, f"class-{e.index:05d}", {"texts": query_texts(e, which)})
        for e in prompts.entries
    ]


def usable_candidates(rows: list[dict[str, Any]], where: str) -> tuple[list[dict[str, Any]], int]:
    """The candidates of one retrieval answer that have a string URL and a numeric (or no) score, and
    how many were skipped for lacking them. A NaN or infinite score is refused: the backend ranks by it,
    so its whole answer is suspect."""
    kept = []
    for row in rows:
        score = row.get("score")
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            if not math.isfinite(score):
                raise SusxError(
                    f"{where} answered a similarity of {score} for {row.get('url')!r}",
                    hint="the retrieval index is damaged or misconfigured: check the backend",
                )
            numeric = True
        else:
            numeric = score is None
        if numeric and isinstance(row.get("url"), str) and row["url"]:
            kept.append(row)
    return kept, len(rows) - len(kept)


def interleave(
    result_lists: list[list[dict[str, Any]]], limit: int, key: str = "url"
) -> list[dict[str, Any]]:
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
    """A cheap identity for a large file collection: sha256 of (path, size, mtime) lines.

    Local paths count as absolute ones (no file-system calls: collections are large), so a collection
    named by a relative path, or from another working directory, has the same identity.
    """
    digest = hashlib.sha256()
    for path in sorted(str(p) if "://" in str(p) else os.path.abspath(p) for p in paths):
        common.require_utf8_name(path)
        try:
            st = os.stat(path)
            digest.update(f"{path}\t{st.st_size}\t{int(st.st_mtime)}\n".encode())
        except OSError:
            digest.update(f"{path}\n".encode())
    return digest.hexdigest()


STAT_COLUMNS = ("candidates", "tried", "valid", "kept", "failed", "invalid", "duplicate")


def class_stats(classes: list[str], stats: dict[int, dict[str, Any]], wanted: int) -> dict[str, Any]:
    """Per-class counts for the summary (the command renders them as a table): images wanted per class,
    and per class its name, ranked candidates, downloads tried, valid, kept, failed, invalid, duplicate."""
    return {
        "wanted": wanted,
        "classes": [
            {"class": classes[ci], **{k: int(stats[ci].get(k, 0)) for k in STAT_COLUMNS}}
            for ci in sorted(stats)
        ],
    }
