"""Working state of a retrieval shard (`curate --source laion`) and of its img2dataset download rounds:
everything that lets a killed run resume without querying again or fetching a URL twice.

Per shard, beside the shard's part manifest in ``<support>/parts/``::

    <source>-<i>-of-<n>/candidates/c<class:05d>.parquet  a class's ranked candidates: rank, url, caption,
                                                         score, query (+ any other field, as strings)
    <source>-<i>-of-<n>/attempts.jsonl                   every candidate tried (JSON lines, see jsonl):
                                                         class_index, rank, url, status, reason
                                                         [, sha256, source_sha256]
    <source>-<i>-of-<n>/round-<k:04d>/                   the download round in progress (below)
    <source>-<i>-of-<n>/round-<k:04d>.done               empty marker of a finished round
    <source>-<i>-of-<n>/stash/<sha256>.<ext>             valid images a full class did not need
    <source>-<i>-of-<n>/matches.parquet                  caption matches (captions mode): cls, url, caption, term
    <source>-<i>-of-<n>/duckdb-tmp/                      DuckDB's spill folder during the caption search

A download round::

    round-<k>/urls.parquet              the round's candidates (cid, url, caption), fixed when it starts
    round-<k>/out-<j:04d>/              img2dataset's output of attempt j (img2dataset's own layout)
    round-<k>/out-<j:04d>.urls.parquet  the URL list handed to img2dataset (removed when it returns)
    round-<k>/out-<j:04d>.log           img2dataset's stdout

A finished round's folder is removed; the stash when the shard's downloads end; duckdb-tmp when the
search ends. Candidates, attempts, round markers and matches stay (a rerun reuses them); `merge` reads
only the part manifests.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common
from susx_cli.artifacts.jsonl import JsonlAppender, read_jsonl

PARTS = "parts"  # the same folder as support.PARTS: a shard's state lives beside its part manifest
CANDIDATE_COLUMNS = ("rank", "url", "caption", "score", "query")


# ----------------------------------------------------------------------------------------- parquet tables


def write_parquet(path: Path, table: Any) -> None:
    """A pyarrow table as parquet, atomically."""
    import pyarrow.parquet as pq

    with common.atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: Path, columns: list[str] | None = None) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns)


def write_candidates(path: Path, rows: list[dict[str, Any]]) -> None:
    """A class's ranked candidates; rank is the row's position, extra fields are kept as strings."""
    import pyarrow as pa

    table = pa.table(
        {
            "rank": pa.array(list(range(len(rows))), pa.int64()),
            "url": pa.array([r.get("url") for r in rows], pa.string()),
            "caption": pa.array([r.get("caption") for r in rows], pa.string()),
            "score": pa.array([r.get("score") for r in rows], pa.float64()),
            "query": pa.array([r.get("query") for r in rows], pa.string()),
        }
    )
    for name in sorted({k for r in rows for k in r} - set(CANDIDATE_COLUMNS)):
        table = table.append_column(
            name, pa.array([None if r.get(name) is None else str(r[name]) for r in rows], pa.string())
        )
    write_parquet(path, table)


def read_candidates(path: Path) -> list[dict[str, Any]]:
    return read_parquet(path).to_pylist()


def write_url_list(path: Path, rows: list[dict[str, Any]]) -> None:
    """The (cid, url, caption) list of a download, as img2dataset reads it (parquet)."""
    import pyarrow as pa

    write_parquet(
        path,
        pa.table(
            {
                "cid": [str(r["cid"]) for r in rows],
                "url": [str(r["url"]) for r in rows],
                "caption": [r.get("caption") or "" for r in rows],
            }
        ),
    )


def read_url_list(path: Path) -> list[dict[str, Any]]:
    return read_parquet(path).to_pylist()


# ----------------------------------------------------------------------------------------- download rounds


@dataclass(frozen=True)
class DownloadRound:
    """One round of downloads: its fixed URL list and one img2dataset output folder per attempt."""

    root: Path

    @property
    def listing(self) -> Path:
        return self.root / "urls.parquet"

    def outputs(self) -> list[Path]:
        """The attempts' output folders so far, in order."""
        return sorted(p for p in self.root.glob("out-*") if p.is_dir())

    def next_output(self) -> Path:
        return self.root / f"out-{len(self.outputs()):04d}"


def url_list_path(out_dir: Path) -> Path:
    """Where the URL list handed to img2dataset for ``out_dir`` goes."""
    return out_dir.with_name(out_dir.name + ".urls.parquet")


def log_path(out_dir: Path) -> Path:
    """Where img2dataset's stdout for ``out_dir`` goes."""
    return out_dir.with_name(out_dir.name + ".log")


# ----------------------------------------------------------------------------------------- a shard's state


class ShardState:
    """The resumable state of one retrieval shard (see the module docstring for the layout)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def of_shard(cls, support_root: Path, source: str, shard_index: int, num_shards: int) -> ShardState:
        state = cls(Path(support_root) / PARTS / f"{source}-{shard_index:05d}-of-{num_shards:05d}")
        (state.root / "candidates").mkdir(parents=True, exist_ok=True)
        return state

    # candidates
    def candidates_path(self, class_index: int) -> Path:
        return self.root / "candidates" / f"c{class_index:05d}.parquet"

    def has_candidates(self, class_index: int) -> bool:
        return self.candidates_path(class_index).exists()

    def write_candidates(self, class_index: int, rows: list[dict[str, Any]]) -> None:
        write_candidates(self.candidates_path(class_index), rows)

    def read_candidates(self, class_index: int) -> list[dict[str, Any]]:
        return read_candidates(self.candidates_path(class_index))

    # attempt log
    @property
    def attempts_path(self) -> Path:
        return self.root / "attempts.jsonl"

    def read_attempts(self) -> list[dict[str, Any]]:
        return read_jsonl(self.attempts_path)

    def attempt_log(self) -> JsonlAppender:
        return JsonlAppender(self.attempts_path)

    # caption matches
    @property
    def matches_path(self) -> Path:
        return self.root / "matches.parquet"

    @property
    def duckdb_tmp(self) -> Path:
        return self.root / "duckdb-tmp"

    def clear_duckdb_tmp(self) -> None:
        shutil.rmtree(self.duckdb_tmp, ignore_errors=True)

    # stash of surplus images
    @property
    def stash_dir(self) -> Path:
        return self.root / "stash"

    def stashed(self) -> dict[str, Path]:
        """Stashed images by content sha256."""
        return {p.stem: p for p in self.stash_dir.glob("*.*")} if self.stash_dir.is_dir() else {}

    def stash(self, digest: str, ext: str, data: bytes) -> Path:
        target = self.stash_dir / f"{digest}.{ext}"
        common.atomic_write_bytes(target, data)
        return target

    def clear_stash(self) -> None:
        shutil.rmtree(self.stash_dir, ignore_errors=True)

    # download rounds
    def pending_round(self) -> DownloadRound | None:
        """The round an interrupted run left unfinished, if any."""
        pending = sorted(p for p in self.root.glob("round-*") if p.is_dir())
        return DownloadRound(pending[0]) if pending else None

    def new_round(self) -> DownloadRound:
        done = [int(p.name.split("-")[1].split(".")[0]) for p in self.root.glob("round-*.done")]
        return DownloadRound(self.root / f"round-{1 + max(done, default=0):04d}")

    def finish_round(self, rnd: DownloadRound) -> None:
        """Mark the round done, then drop its folder (the marker first: a kill in between loses nothing)."""
        (rnd.root.parent / f"{rnd.root.name}.done").touch()
        shutil.rmtree(rnd.root)
