"""`curate --source laion`: SuS-LC, natural images retrieved per class and downloaded with img2dataset.

Two ways to find candidates, because the public LAION kNN service the paper used is gone:
- ``knn``: text-to-image search on a (self-hosted) `clip-retrieval back`, one query per photo prompt or
  CuPL sentence, the sentences' results interleaved;
- ``captions``: an offline DuckDB search of caption metadata (LAION, Re-LAION, DataComp, CC, ...) for the
  class names, ranked by CLIP text similarity (see laion_captions.py).

Then, per class, candidates are downloaded in rank order, in rounds sized to what is still missing,
until M valid images are kept. Per shard, everything that resumes a run lives in
``parts/laion-<shard>/``: the ranked candidates of each class, the log of every candidate tried and
what came of it, and the download round in progress, so a resumed run neither queries again nor
fetches a URL twice.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli import runtime
from susx_cli.adapters.download import (
    DISTRIBUTORS,
    MAX_IMAGE_BYTES,
    OUTPUT_FORMATS,
    RESIZE_MODES,
    DownloadOptions,
)
from susx_cli.adapters.retrieval import PUBLIC_INDEX, KnnOptions
from susx_cli.artifacts import common
from susx_cli.artifacts.prompts import Prompts
from susx_cli.artifacts.shard_state import ShardState
from susx_cli.artifacts.support import SupportWriter
from susx_cli.encoder import recorded_pretrained
from susx_cli.errors import SusxError, require_range
from susx_cli.options import option
from susx_cli.progress import bar, info, warn
from susx_cli.sources import ranked
from susx_cli.sources.base import FromOptions, WorkUnit, require_per_class

MODES = ("knn", "captions")


def reason_of(error: str | None) -> str:
    """A short, countable reason for a failed download."""
    text = (error or "no data").strip()
    low = text.lower()
    if "timed out" in low or "timeout" in low:
        return "timeout"
    if low.startswith(
        "refused:"
    ):  # guarded_http: scheme, private address or size; drop the detail in brackets
        return text.split(" (")[0]
    match = re.search(r"http (?:error )?(\d{3})", low)
    if match:
        return f"HTTP {match.group(1)}"
    if "x-robots-tag" in low:
        return "opt-out (X-Robots-Tag)"
    if "connection refused" in low:
        return "connection refused"
    return text[:60]


@dataclass
class LaionOptions:
    """`curate --source laion` (SuS-LC): a kNN backend or an offline caption search; downloads by img2dataset."""

    per_class: int | None = option(None, "--per-class", "-k", help="images per class.")
    mode: str = option(
        "knn",
        "--laion-mode",
        choices=MODES,
        help="knn (a clip-retrieval backend) | captions (offline search of caption metadata).",
    )
    query: str = option(
        "photo",
        "--prompt-mode",
        choices=ranked.QUERY_TEXTS,
        help="photo (the class's photo prompt) | cupl (its CuPL sentences, results interleaved).",
    )
    candidates: int = option(5000, "--candidates", help="ranked candidates per class (default 5000).")
    knn_url: str | None = option(
        None,
        "--knn-url",
        help="knn mode: URL of your `clip-retrieval back` (no default: LAION's public service is offline since 2024).",
    )
    index_name: str = option(PUBLIC_INDEX, "--index-name", help="index of the backend to search.")
    knn_timeout: float = option(
        60.0, "--knn-timeout", help="seconds to wait for the kNN backend's answer to one query."
    )
    knn_dedup: bool = option(
        True, "--knn-dedup/--no-knn-dedup", help="let the backend drop near-duplicate results."
    )
    knn_safety: bool = option(
        True, "--knn-safety/--no-knn-safety", help="let the backend drop unsafe results (its safety model)."
    )
    knn_violence: bool = option(
        True, "--knn-violence/--no-knn-violence", help="let the backend drop violent results."
    )
    knn_aesthetic_weight: float = option(
        0.5,
        "--knn-aesthetic-weight",
        help="weight of the backend's aesthetic embedding in the query (0 = none).",
    )
    metadata: str | None = option(
        None,
        "--metadata",
        help="captions mode: parquet files with url and caption columns (a glob, file or folder).",
    )
    url_col: str = option("url", "--url-col", help="captions mode: URL column of the metadata.")
    caption_col: str = option(
        "caption", "--caption-col", help="captions mode: caption column of the metadata."
    )
    synonyms: Path | None = option(
        None,
        "--synonyms",
        help='captions mode: JSON {"class name": ["synonym", ...]} also matched in captions.',
        path="input",
    )
    max_matches: int = option(
        2000,
        "--max-matches",
        help="captions mode: caption matches per class to rank (a hash-ordered sample beyond).",
    )
    duckdb_threads: int | None = option(
        None, "--duckdb-threads", help="captions mode: DuckDB threads (default: all cores)."
    )
    duckdb_memory: str | None = option(
        None,
        "--duckdb-memory",
        help="captions mode: DuckDB memory limit, e.g. 8GB (it spills to disk beyond).",
    )
    model: str = option(
        "ViT-B-32",
        "--clip-model",
        help="captions mode: open_clip model that ranks the captions (ARCH or ARCH:TAG).",
    )
    pretrained: str | None = option(
        "openai",
        "--clip-pretrained",
        help="its weights (tag, checkpoint path, or 'none'; default: the --clip-model tag, else openai).",
    )
    device: str | None = option(
        "auto", "--device", help="auto (cuda:LOCAL_RANK under torchrun), cpu, cuda, cuda:1, mps."
    )
    image_size: int = option(256, "--image-size", help="resize downloads to this size (img2dataset resizer).")
    resize_mode: str = option(
        "keep_ratio",
        "--resize-mode",
        choices=RESIZE_MODES,
        help="keep_ratio | center_crop | border | keep_ratio_largest | no.",
    )
    download_timeout: int = option(
        10,
        "--download-timeout",
        help="seconds for one image in all (connect, redirects, every read, retries).",
    )
    max_image_bytes: int = option(
        MAX_IMAGE_BYTES,
        "--max-image-bytes",
        help="refuse an image larger than this many bytes (default 30 MB).",
    )
    allow_private_urls: bool = option(
        False,
        "--allow-private-urls/--no-allow-private-urls",
        help="also fetch from loopback, private and link-local addresses (refused by default, redirects included).",
    )
    download_retries: int = option(2, "--download-retries", help="retries of a failed download.")
    download_processes: int = option(1, "--download-processes", help="img2dataset processes.")
    download_threads: int = option(64, "--download-threads", help="img2dataset threads per process.")
    distributor: str = option(
        "multiprocessing",
        "--distributor",
        choices=DISTRIBUTORS,
        help="img2dataset distributor: multiprocessing | pyspark | ray.",
    )
    download_format: str = option(
        "files",
        "--download-format",
        choices=OUTPUT_FORMATS,
        help="img2dataset output while downloading: files | webdataset.",
    )
    # Built from the fields above: what the kNN backend and img2dataset are asked.
    knn: KnnOptions = field(init=False, repr=False, compare=False)
    download: DownloadOptions = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SusxError(f"unknown --laion-mode {self.mode!r}", hint="use knn or captions")
        require_per_class("laion", self.per_class, "images to keep per class")
        if not self.knn_timeout > 0 or math.isinf(self.knn_timeout):
            raise SusxError(
                f"--knn-timeout must be a positive number of seconds, got {self.knn_timeout}",
                hint="e.g. --knn-timeout 60",
            )
        require_range("--max-matches", self.max_matches, 1, hint="e.g. --max-matches 2000")
        require_range("--image-size", self.image_size, 1, 8192, hint="e.g. --image-size 256")
        if self.duckdb_threads is not None:
            require_range("--duckdb-threads", self.duckdb_threads, 1, hint="leave it out to use every core")
        if self.candidates < 1:
            raise SusxError(
                f"--candidates must be at least 1, got {self.candidates}", hint="e.g. --candidates 5000"
            )
        if self.mode == "captions" and not self.metadata:
            raise SusxError(
                "--laion-mode captions needs --metadata (parquet files with url and caption columns)",
                hint="e.g. --metadata 'laion/metadata/*.parquet'",
            )
        self.knn = KnnOptions(
            deduplicate=self.knn_dedup,
            use_safety_model=self.knn_safety,
            use_violence_detector=self.knn_violence,
            aesthetic_weight=self.knn_aesthetic_weight,
        )
        self.download = DownloadOptions(
            timeout=self.download_timeout,
            retries=self.download_retries,
            processes=self.download_processes,
            threads=self.download_threads,
            distributor=self.distributor,
            output_format=self.download_format,
            image_size=self.image_size,
            resize_mode=self.resize_mode,
            max_bytes=self.max_image_bytes,
            allow_private=self.allow_private_urls,
        )
        self.download.validate()
        self.device = runtime.resolve_device(self.device)  # fails fast; cuda:LOCAL_RANK under torchrun
        if self.mode == "knn" and not self.knn_url:
            # No default endpoint: the public service the paper used is gone, so the user picks the backend.
            raise SusxError(
                "--source laion needs --knn-url: LAION's public kNN service is offline since 2024",
                hint="pass --knn-url of a self-hosted `clip-retrieval back`, or use --laion-mode captions --metadata FILES",
            )


@dataclass
class LaionSource(LaionOptions, FromOptions):
    """Per class: ranked candidates (kNN or captions), then downloads in rank order until M images are kept."""

    name: str = "laion"

    # ------------------------------------------------------------------ contract

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "mode": self.mode,
            "per_class": self.per_class,
            "query": self.query,
            "candidates": self.candidates,
            "download": self.download.recorded(),
        }
        if self.mode == "knn":
            opts["knn"] = {"index_name": self.index_name, **self.knn.__dict__}
        else:
            opts["captions"] = {
                "metadata": self.metadata if "://" in self.metadata else common.resolved_path(self.metadata),
                "url_col": self.url_col,
                "caption_col": self.caption_col,
                "max_matches": self.max_matches,
                "model": self.model,
                "pretrained": recorded_pretrained(self.pretrained),
            }
        return opts

    def inputs(self) -> list[dict[str, Any]]:
        if self.mode != "captions":
            return []
        from susx_cli.sources.laion_captions import resolve_files

        files = resolve_files(self.metadata)
        out = [
            {
                "path": self.metadata,
                "kind": "caption-metadata",
                "sha256": ranked.listing_fingerprint(files),
                "files": len(files),
            }
        ]
        if self.synonyms is not None:
            out.append(common.identity(self.synonyms, "synonyms"))
        return out

    def units(self, prompts: Prompts) -> list[WorkUnit]:
        return ranked.class_units(prompts, self.query)

    # ------------------------------------------------------------------ run

    def run(self, units: list[WorkUnit], writer: SupportWriter) -> dict[str, Any]:
        state = ShardState.of_shard(writer.root, self.name, writer.shard_index, writer.num_shards)
        texts = {u.class_index: u.payload["texts"] for u in units}
        kept = Counter(ci for ci, _ in writer.done)
        todo = [ci for ci in sorted(texts) if kept[ci] < self.per_class and not state.has_candidates(ci)]
        if todo:
            if self.mode == "knn":
                self._query_knn(state, todo, texts, writer.classes)
            else:
                self._search_captions(state, todo, texts, writer.classes)
        stats = self._fill(state, sorted(texts), writer)
        reasons: Counter = Counter()
        for s in stats.values():
            reasons.update(s.pop("reasons"))
        if reasons:
            info("download failures: " + ", ".join(f"{r} x{n}" for r, n in reasons.most_common(8)))
        summary = {
            "mode": self.mode,
            "tried": sum(s["tried"] for s in stats.values()),
            "kept": sum(s["kept"] for s in stats.values()),
            "failure_reasons": dict(reasons.most_common(20)),
            "success_rate": {writer.classes[ci]: s["success_rate"] for ci, s in stats.items()},
            "class_stats": ranked.class_stats(writer.classes, stats, self.per_class),
        }
        summary["knn_url" if self.mode == "knn" else "metadata"] = (
            self.knn_url if self.mode == "knn" else self.metadata
        )
        return summary

    def _query_knn(
        self, state: ShardState, todo: list[int], texts: dict[int, list[str]], classes: list[str]
    ) -> None:
        from susx_cli.adapters.retrieval import KnnBackend

        backend = KnnBackend(self.knn_url, self.index_name, self.knn, timeout=self.knn_timeout)
        total = sum(len(texts[ci]) for ci in todo)
        unusable = 0
        with bar("query kNN", total=total, unit="query") as progress:
            for ci in todo:
                # Each sentence asks for its share; when the sentences' results overlap, ask again for more.
                per_query = max(1, math.ceil(self.candidates / len(texts[ci])))
                while True:
                    lists, full = [], False
                    for text in texts[ci]:
                        rows = backend.query(text, per_query)
                        full |= len(rows) >= per_query
                        usable, skipped = ranked.usable_candidates(rows, f"the kNN backend at {self.knn_url}")
                        unusable += skipped
                        for row in usable:
                            row["query"] = text
                        lists.append(usable)
                        progress.advance()
                    found = ranked.interleave(lists, self.candidates)
                    if len(found) >= self.candidates or not full or per_query >= self.candidates:
                        break
                    per_query = min(self.candidates, 2 * per_query)
                    total += len(texts[ci])
                    progress.update(total=total)
                if not found:
                    warn(f"the kNN backend returned no results for class {classes[ci]!r}")
                state.write_candidates(ci, found)
        if unusable:
            warn(
                f"skipped {unusable} kNN result row(s) without a URL or with a similarity that is not a number"
            )

    def _search_captions(
        self, state: ShardState, todo: list[int], texts: dict[int, list[str]], classes: list[str]
    ) -> None:
        from susx_cli.encoder import load_encoder
        from susx_cli.sources import laion_captions as captions

        if state.matches_path.exists():
            info(f"reusing the caption matches of an interrupted run ({state.matches_path})")
            matches = captions.Matches.load(state.matches_path)
        else:
            files = captions.resolve_files(self.metadata)
            synonyms = captions.read_synonyms(self.synonyms) if self.synonyms else {}
            wanted = set(todo)
            terms = [(t, ci) for t, ci in captions.class_terms(classes, synonyms) if ci in wanted]
            info(f"searching {len(files)} parquet file(s) for {len(todo)} class(es), {len(terms)} term(s)")
            matches = captions.match_captions(
                files,
                terms,
                url_col=self.url_col,
                caption_col=self.caption_col,
                max_per_class=self.max_matches,
                threads=self.duckdb_threads,
                memory_limit=self.duckdb_memory,
                temp_dir=state.duckdb_tmp,
            )
            matches.save(state.matches_path)
            state.clear_duckdb_tmp()
        for ci in todo:
            if not matches.count(ci):
                warn(f"no caption in the metadata mentions class {classes[ci]!r}")
        encoder = load_encoder(
            self.model,
            self.pretrained,
            device=self.device,
            random_note="the caption ranking is meaningless (pipeline check only)",
        )
        ranking = captions.rank_matches(
            encoder, {ci: texts[ci] for ci in todo}, matches, keep=self.candidates
        )
        for ci in todo:
            state.write_candidates(ci, ranking[ci])

    # ------------------------------------------------------------------ downloading

    def _fill(
        self, state: ShardState, class_indices: list[int], writer: SupportWriter
    ) -> dict[int, dict[str, Any]]:
        """Download rounds until every class has M images or has no candidate left; returns per-class stats."""
        from susx_cli.adapters import download as dl

        attempts: dict[tuple[int, int], dict[str, Any]] = {}
        for row in state.read_attempts():
            attempts[(int(row["class_index"]), int(row["rank"]))] = row
        cands = {ci: state.read_candidates(ci) for ci in class_indices if state.has_candidates(ci)}
        kept: Counter = Counter()
        hashes: dict[int, set[str]] = {ci: set() for ci in class_indices}
        done_ranks: dict[int, set[int]] = {ci: set() for ci in class_indices}
        # Valid images a class did not need (surplus) are stashed, so no other class refetches them.
        by_sha: dict[str, Path] = state.stashed()
        local: dict[str, dict[str, Any]] = {}  # URL -> an image of it already processed in this shard
        for (ci, _), row in writer.done.items():
            path = writer.root / row["path"]
            by_sha[row["sha256"]] = path
            if row.get("url"):
                local[row["url"]] = {"path": path, "source_sha256": row.get("source_sha256")}
            if ci in hashes:
                kept[ci] += 1
                hashes[ci].add(row["sha256"])
                done_ranks[ci].add(int(row.get("rank", row.get("order", -1))))
        for row in attempts.values():
            if row.get("sha256") in by_sha and row["url"] not in local:
                local[row["url"]] = {"path": by_sha[row["sha256"]], "source_sha256": row.get("source_sha256")}
        log = state.attempt_log()

        def record(ci: int, rank: int, url: str, status: str, reason: str | None = None, **extra) -> None:
            row = {"class_index": ci, "rank": rank, "url": url, "status": status, "reason": reason, **extra}
            attempts[(ci, rank)] = row
            log.append(row, sync=False)  # synced once per round

        try:
            while True:
                rnd, rows = state.pending_round(), None
                if rnd is not None:
                    info(f"finishing the download round an interrupted run left ({rnd.root.name})")
                else:
                    rows = self._next_batch(cands, attempts, kept, done_ranks, record)
                    log.flush()
                    if not rows:
                        break
                    rnd = state.new_round()
                rows, results = dl.fetch_round(rnd.root, rows, self.download, have=set(local))
                for row in sorted(rows, key=lambda r: tuple(int(x) for x in str(r["cid"]).split(":"))):
                    ci, rank = (int(x) for x in str(row["cid"]).split(":"))
                    url = row["url"]
                    if rank in done_ranks[ci]:
                        if (ci, rank) not in attempts:
                            record(ci, rank, url, "kept")
                        continue
                    if url in local:
                        data = Path(local[url]["path"]).read_bytes()
                        ext = Path(local[url]["path"]).suffix.lstrip(".")
                        source_sha = local[url]["source_sha256"]
                    else:
                        res = results[str(row["cid"])]
                        if res.data is None:
                            record(ci, rank, url, "failed", reason_of(res.error))
                            continue
                        try:
                            data, ext = dl.check_image(res.data, self.download)
                        except dl.InvalidImage as exc:
                            record(ci, rank, url, "invalid", str(exc))
                            continue
                        source_sha = res.source_sha256
                    digest = common.sha256_bytes(data)
                    extra = {"sha256": digest, "source_sha256": source_sha}
                    if digest in hashes[ci]:
                        record(ci, rank, url, "duplicate", **extra)
                    elif kept[ci] >= self.per_class:
                        if digest not in by_sha:
                            by_sha[digest] = state.stash(digest, ext, data)
                        local.setdefault(url, {"path": by_sha[digest], "source_sha256": source_sha})
                        record(ci, rank, url, "surplus", **extra)
                    else:
                        stored = writer.add(
                            ci, f"r{rank:06d}", data, ext, self._fields(cands[ci][rank], rank, source_sha)
                        )
                        path = writer.root / stored["path"]
                        by_sha.setdefault(digest, path)
                        local.setdefault(url, {"path": path, "source_sha256": source_sha})
                        kept[ci] += 1
                        hashes[ci].add(digest)
                        done_ranks[ci].add(rank)
                        record(ci, rank, url, "kept", **extra)
                log.sync()
                state.finish_round(rnd)
        finally:
            log.close()
        state.clear_stash()  # every class is full or out of candidates: no round will need it
        return self._stats(cands, attempts, kept, class_indices)

    def _next_batch(self, cands, attempts, kept, done_ranks, record) -> list[dict[str, Any]]:
        """The next candidates to fetch: per class short of M, about twice what it still lacks, in rank order."""
        from susx_cli.adapters.download import is_fetchable

        known = {}  # URLs already found bad in this shard (for another class): not fetched again
        for row in attempts.values():
            if row["status"] in ("failed", "invalid", "skipped"):
                known[row["url"]] = row
        rows = []
        for ci, cand_rows in cands.items():
            need = self.per_class - kept[ci]
            if need <= 0:
                continue
            take = max(2 * need, need + 4)
            for cand in cand_rows:
                rank = int(cand["rank"])
                if (ci, rank) in attempts or rank in done_ranks[ci]:
                    continue
                if not is_fetchable(cand["url"]):
                    record(ci, rank, str(cand["url"]), "skipped", "not an http(s) URL")
                    continue
                if cand["url"] in known:
                    record(ci, rank, cand["url"], known[cand["url"]]["status"], known[cand["url"]]["reason"])
                    continue
                rows.append({"cid": f"{ci}:{rank}", "url": cand["url"], "caption": cand.get("caption")})
                take -= 1
                if take == 0:
                    break
        return rows

    def _fields(self, cand: dict[str, Any], rank: int, source_sha: str | None) -> dict[str, Any]:
        fields = {
            "source": "laion",
            "order": rank,
            "rank": rank,
            "url": cand["url"],
            "caption": cand.get("caption"),
            "score": cand.get("score"),
            "query": cand.get("query"),
            "mode": self.mode,
            "source_sha256": source_sha,
        }
        if self.mode == "knn":
            fields["index"] = self.index_name
        elif cand.get("matched"):
            fields["matched"] = cand["matched"]
        return fields

    def _stats(self, cands, attempts, kept, class_indices) -> dict[int, dict[str, Any]]:
        stats: dict[int, dict[str, Any]] = {}
        for ci in class_indices:
            rows = [r for (c, _), r in attempts.items() if c == ci]
            status = Counter(r["status"] for r in rows)
            tried = sum(n for s, n in status.items() if s != "skipped")
            valid = status["kept"] + status["duplicate"] + status["surplus"]
            stats[ci] = {
                "candidates": len(cands.get(ci, [])),
                "tried": tried,
                "valid": valid,
                "kept": kept[ci],
                "failed": status["failed"],
                "invalid": status["invalid"],
                "duplicate": status["duplicate"],
                "skipped": status["skipped"],
                "success_rate": round(valid / tried, 4) if tried else None,
                "reasons": Counter(
                    r["reason"] or r["status"]
                    for r in rows
                    if r["status"] in ("failed", "invalid", "skipped")
                ),
            }
        return stats
