"""Offline caption search: find each class's candidate images in LAION / DataComp / CC-style metadata.

The metadata is a set of parquet files with (at least) a URL and a caption column, possibly billions of
rows. DuckDB streams over the files (a glob) in parallel and never loads them whole: one scan matches
every class at once with a single case-insensitive regular expression of all class names and synonyms
(word boundaries, optional plural), joins the matched words back to their classes, drops non-http(s)
URLs and repeated URLs, and keeps at most ``max_per_class`` matches per class (a deterministic,
hash-ordered sample when a class matches more). The matches are then ranked by CLIP text similarity
between the class prompt and the caption.
"""

from __future__ import annotations

import glob as globlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from susx_cli.errors import SusxError, missing_extra

SEPARATORS = r"[\s_\-]+"


@dataclass
class Matches:
    """Caption matches as one Arrow table (cls, url, caption, term) sorted by class then URL.

    Kept columnar, not as Python objects: an uncapped search can return millions of rows.
    """

    table: Any

    def __post_init__(self) -> None:
        import numpy as np

        self.table = self.table.sort_by([("cls", "ascending"), ("url", "ascending")])
        cls = self.table.column("cls").to_numpy() if self.table.num_rows else np.zeros(0, dtype=np.int64)
        values, starts, counts = np.unique(cls, return_index=True, return_counts=True)
        self._spans = {int(v): (int(s), int(n)) for v, s, n in zip(values, starts, counts, strict=True)}

    def count(self, class_index: int) -> int:
        return self._spans.get(class_index, (0, 0))[1]

    def of(self, class_index: int):
        start, n = self._spans.get(class_index, (0, 0))
        return self.table.slice(start, n)

    def save(self, path: Path) -> None:
        """As parquet (a shard's ``matches.parquet``, see ``artifacts.shard_state``), atomically."""
        from susx_cli.artifacts.shard_state import write_parquet

        write_parquet(path, self.table)

    @classmethod
    def load(cls, path: Path) -> Matches:
        from susx_cli.artifacts.shard_state import read_parquet

        return cls(read_parquet(path))


def resolve_files(pattern: str) -> list[str]:
    """Parquet files named by a path, a folder (all parquet files under it) or a glob; remote URLs pass through."""
    if "://" in pattern:
        return [pattern]
    path = Path(pattern).expanduser()
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*.parquet"))
    else:
        files = sorted(globlib.glob(str(path), recursive=True))
    files = [f for f in files if Path(f).is_file()]
    if not files:
        raise SusxError(
            f"no parquet files match {pattern!r}", hint="pass --metadata 'path/to/metadata/*.parquet'"
        )
    return files


def normalize_term(text: str) -> str:
    return " ".join(re.sub(SEPARATORS, " ", text.lower()).split())


def term_pattern(term: str) -> str:
    """RE2 fragment for one class name: flexible separators, word boundaries where the edge is ASCII alnum."""
    words = [re.escape(w) for w in normalize_term(term).split(" ") if w]
    body = SEPARATORS.join(words)
    start = r"\b" if term.strip()[:1].isascii() and term.strip()[:1].isalnum() else ""
    return start + body


def build_regex(terms: list[str]) -> str:
    """One alternation of all terms (longest first, so 'golden retriever' wins over 'retriever')."""
    ordered = sorted(set(terms), key=lambda t: (-len(t), t))
    last_ok = all(t[-1:].isascii() and t[-1:].isalnum() for t in ordered)
    end = r"(?:e?s)?\b" if last_ok else r"(?:e?s)?"
    return "(" + "|".join(term_pattern(t) for t in ordered) + ")" + end


def class_terms(classes: list[str], synonyms: dict[str, list[str]] | None = None) -> list[tuple[str, int]]:
    """(normalised term, class index) for every class name and synonym."""
    synonyms = synonyms or {}
    unknown = [name for name in synonyms if name not in classes]
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        raise SusxError(
            f"synonyms name classes that are not in prompts.json: {shown}", hint="use the exact class names"
        )
    pairs = []
    for index, name in enumerate(classes):
        for term in [name, *synonyms.get(name, [])]:
            norm = normalize_term(term)
            if norm:
                pairs.append((norm, index))
    return sorted(set(pairs))


def read_synonyms(path: Path) -> dict[str, list[str]]:
    from susx_cli.artifacts.common import read_json

    data = read_json(path, "synonyms file")
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in data.values()
    ):
        raise SusxError(
            f"{path}: synonyms must be a JSON object {{class name: [synonym, ...]}}",
            hint='e.g. {"dog": ["puppy"]}',
        )
    return data


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect(threads: int | None = None, memory_limit: str | None = None, temp_dir: Path | None = None):
    try:
        import duckdb
    except ImportError as exc:
        raise missing_extra("duckdb", "retrieval") from exc
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = {_sql_str(memory_limit)}")
    if temp_dir:
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {_sql_str(str(temp_dir))}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = true")  # query_progress() answers only with it on
    con.execute("SET enable_progress_bar_print = false")
    return con


def check_columns(con, files: list[str], url_col: str, caption_col: str) -> None:
    import duckdb

    try:
        cols = [
            r[0]
            for r in con.execute(
                f"DESCRIBE SELECT * FROM read_parquet({_files_sql(files)}, union_by_name = true)"
            ).fetchall()
        ]
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0][:200]
        raise SusxError(
            f"cannot read the caption metadata ({first})",
            hint="pass parquet files with url and caption columns",
        ) from None
    missing = [c for c in (url_col, caption_col) if c not in cols]
    if missing:
        raise SusxError(
            f"the caption metadata lacks the column(s) {', '.join(repr(m) for m in missing)} (it has: {', '.join(cols[:12])})",
            hint="name the right ones with --url-col and --caption-col",
        )


def _files_sql(files: list[str]) -> str:
    return "[" + ", ".join(_sql_str(f) for f in files) + "]"


def match_captions(
    files: list[str],
    terms: list[tuple[str, int]],
    *,
    url_col: str = "url",
    caption_col: str = "caption",
    max_per_class: int = 2000,
    threads: int | None = None,
    memory_limit: str | None = None,
    temp_dir: Path | None = None,
    progress: bool = True,
) -> Matches:
    """Every class's caption matches (at most ``max_per_class``), in one streaming scan of all files."""
    import duckdb
    import pyarrow as pa

    from susx_cli.progress import bar

    con = connect(threads, memory_limit, temp_dir)
    try:
        check_columns(con, files, url_col, caption_col)
        con.register("susx_terms", pa.table({"term": [t for t, _ in terms], "cls": [c for _, c in terms]}))
        pattern = _sql_str(build_regex([t for t, _ in terms]))
        url, cap = _ident(url_col), _ident(caption_col)
        sql = f"""
            WITH hits AS (
                SELECT {url}::VARCHAR AS url, {cap}::VARCHAR AS caption,
                       unnest(regexp_extract_all({cap}::VARCHAR, {pattern}, 1, 'i')) AS word
                FROM read_parquet({_files_sql(files)}, union_by_name = true)
                WHERE {cap} IS NOT NULL AND {url} IS NOT NULL
                  AND regexp_matches({cap}::VARCHAR, {pattern}, 'i')
                  AND regexp_matches({url}::VARCHAR, '^https?://[^/\\s]', 'i')
            )
            SELECT t.cls AS cls, h.url AS url, min(h.caption) AS caption, min(t.term) AS term
            FROM hits h JOIN susx_terms t ON lower(regexp_replace(h.word, '{SEPARATORS}', ' ', 'g')) = t.term
            GROUP BY t.cls, h.url
            QUALIFY row_number() OVER (PARTITION BY t.cls ORDER BY hash(h.url), h.url) <= {int(max_per_class)}
        """
        done = threading.Event()
        table = None
        error: list[BaseException] = []

        def work() -> None:
            nonlocal table
            try:
                relation = con.sql(sql)
                # duckdb 2.x: to_arrow_table; 1.x: arrow (a Table there)
                table = relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                error.append(exc)
            finally:
                done.set()

        runner = threading.Thread(target=work, daemon=True)
        with bar("caption search", total=100 if progress else None, unit="%") as tracker:
            runner.start()
            seen = 0.0
            try:
                while not done.wait(0.25):
                    try:
                        pct = float(con.query_progress())
                    except Exception:
                        pct = -1
                    if pct > seen:
                        tracker.advance(pct - seen)
                        seen = pct
            except KeyboardInterrupt:
                con.interrupt()
                runner.join()
                raise
            tracker.update(completed=100)
        runner.join()
        if error:
            exc = error[0]
            if isinstance(exc, duckdb.Error):
                first = str(exc).splitlines()[0][:300]
                raise SusxError(
                    f"caption search failed: {first}",
                    hint="check the metadata files and --url-col/--caption-col",
                )
            raise exc
    finally:
        con.close()
    return Matches(table)


def rank_matches(
    encoder,
    prompts_per_class: dict[int, list[str]],
    matches: Matches,
    *,
    keep: int | None = None,
    batch_size: int = 256,
) -> dict[int, list[dict[str, Any]]]:
    """Each class's matches by CLIP text similarity of caption and class prompt, best first (the first ``keep``).

    ``encoder`` is a ``susx_cli.encoder.Encoder``.
    """
    import numpy as np

    from susx_cli.embedding import class_text_weights
    from susx_cli.progress import bar

    classes = sorted(prompts_per_class)
    weights = class_text_weights(encoder, [prompts_per_class[c] for c in classes]) if classes else None
    ranked: dict[int, list[dict[str, Any]]] = {}
    total = sum(matches.count(c) for c in classes)
    with bar("rank captions", total=total, unit="caption") as progress:
        for row, ci in enumerate(classes):
            part = matches.of(ci)
            urls = part.column("url").to_pylist()
            caps = part.column("caption").to_pylist()
            terms = part.column("term").to_pylist()
            scores = np.empty(len(urls), dtype=np.float64)
            for start in range(0, len(urls), batch_size):
                chunk = caps[start : start + batch_size]
                scores[start : start + len(chunk)] = encoder.encode_texts(chunk, batch_size) @ weights[row]
                progress.advance(len(chunk))
            order = sorted(range(len(urls)), key=lambda i: (-scores[i], urls[i]))[:keep]
            query = " | ".join(prompts_per_class[ci])[:300]
            ranked[ci] = [
                {
                    "url": urls[i],
                    "caption": caps[i],
                    "score": float(scores[i]),
                    "query": query,
                    "matched": terms[i],
                }
                for i in order
            ]
    return ranked
