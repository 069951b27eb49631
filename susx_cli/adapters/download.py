"""img2dataset behind a few functions: download a list of candidate URLs, read the results back, check them.

img2dataset runs the downloads (threads, its multiprocessing / pyspark / ray distributors) and writes
what it got (``files`` or ``webdataset`` output, one status row per URL), but each URL is fetched by
``susx_cli.net.guarded_http``: img2dataset's own fetch (urllib) has a per-read timeout only, follows
redirects to any scheme and address, and buffers bodies of any size, and it has no parameter to change
that. ``GuardedDownloader`` wraps the downloader img2dataset builds; in the worker that runs a shard, it
points img2dataset's per-URL fetch at ``guarded_fetch`` (same arguments, same result), which keeps the
X-Robots-Tag opt-out check and retries transient failures within the one deadline per image.
It is run with re-encoding disabled, so that the bytes that come back are the server's own: cv2, which
img2dataset decodes with, accepts truncated JPEGs, so the decode check here is a full PIL decode of the
original bytes, and only then is the image resized with img2dataset's own ``Resizer``.

A download *round* lives in a folder (its layout: ``artifacts.shard_state``): the candidates, fixed
when the round starts, and one img2dataset output folder per attempt. A round that was interrupted
is completed by downloading only the URLs that have no result yet, so nothing that came back is
fetched twice.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import os
import signal
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from susx_cli.artifacts import shard_state as state
from susx_cli.errors import SusxError, missing_extra
from susx_cli.net import clients, guarded_http

OUTPUT_FORMATS = ("files", "webdataset")
DISTRIBUTORS = ("multiprocessing", "pyspark", "ray")
RESIZE_MODES = ("no", "keep_ratio", "keep_ratio_largest", "center_crop", "border")
RAW_EXT = (
    "jpg"  # img2dataset names every stored sample <key>.<encode_format>, even when it does not re-encode
)
MAX_IMAGE_BYTES = clients.IMAGE.max_bytes


@dataclass
class DownloadOptions:
    timeout: int = 10
    retries: int = 2
    processes: int = 1
    threads: int = 64
    distributor: str = "multiprocessing"
    output_format: str = "files"
    user_agent_token: str | None = "img2dataset"
    max_bytes: int = MAX_IMAGE_BYTES  # body-size cap per image
    allow_private: bool = False  # fetch from loopback / private / link-local addresses too
    trusted: frozenset[tuple[str, int]] = frozenset()  # (host, port) exempt from the address check (tests)
    # applied after the decode check, with img2dataset's Resizer
    image_size: int = 256
    resize_mode: str = "keep_ratio"
    resize_only_if_bigger: bool = True
    encode_format: str = "jpg"
    encode_quality: int = 95
    min_image_size: int = 0
    max_aspect_ratio: float = float("inf")
    samples_per_shard: int = 1000
    extra: dict[str, Any] = field(default_factory=dict)  # any other img2dataset.download keyword

    def validate(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise SusxError(
                f"unknown download format {self.output_format!r}", hint=f"use {' or '.join(OUTPUT_FORMATS)}"
            )
        if self.distributor not in DISTRIBUTORS:
            raise SusxError(
                f"unknown distributor {self.distributor!r}", hint=f"use one of {', '.join(DISTRIBUTORS)}"
            )
        if self.resize_mode not in RESIZE_MODES:
            raise SusxError(
                f"unknown resize mode {self.resize_mode!r}", hint=f"use one of {', '.join(RESIZE_MODES)}"
            )
        if self.encode_format not in ("jpg", "png", "webp"):
            raise SusxError(f"unknown image format {self.encode_format!r}", hint="use jpg, png or webp")
        if self.timeout < 1 or self.retries < 0 or self.processes < 1 or self.threads < 1:
            raise SusxError(
                "download timeout, processes and threads must be at least 1 and retries at least 0",
                hint="e.g. --download-timeout 10 --download-retries 2",
            )
        if self.max_bytes < 1:
            raise SusxError(
                f"--max-image-bytes must be at least 1, got {self.max_bytes}",
                hint="e.g. --max-image-bytes 30000000",
            )

    def policy(self) -> guarded_http.UrlPolicy:
        """What one image's fetch may do: ``timeout`` seconds in all, ``max_bytes``, public addresses only."""
        return clients.IMAGE.policy(
            self.timeout, max_bytes=self.max_bytes, allow_private=self.allow_private, trusted=self.trusted
        )

    def recorded(self) -> dict[str, Any]:
        """The options that change the stored images (how they are fetched does not)."""
        return {
            "image_size": self.image_size,
            "resize_mode": self.resize_mode,
            "resize_only_if_bigger": self.resize_only_if_bigger,
            "encode_format": self.encode_format,
            "encode_quality": self.encode_quality,
            "min_image_size": self.min_image_size,
            "max_aspect_ratio": None if self.max_aspect_ratio == float("inf") else self.max_aspect_ratio,
        }


@dataclass
class Result:
    """What came back for one candidate: the original bytes, or why there are none."""

    cid: str
    url: str
    data: bytes | None
    error: str | None = None
    source_sha256: str | None = None


class InvalidImage(Exception):
    """The bytes are not a complete, decodable image (HTML page, truncated file, ...)."""


def is_fetchable(url: Any) -> bool:
    """Only http(s) URLs with a host are ever handed to the downloader."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def user_agent(token: str | None) -> str:
    """The User-Agent of image downloads: names img2dataset's token, which site owners use to opt out."""
    return (
        f"Mozilla/5.0 (compatible; {token}; +https://github.com/rom1504/img2dataset)"
        if token
        else "Mozilla/5.0"
    )


def guarded_fetch(row, timeout, retries, user_agent_token, disallowed_header_directives, *, policy):
    """img2dataset's per-URL fetch, through guarded_http: (key, BytesIO or None, error or None).

    The policy's timeout is the budget of the image: a retry (transient failures only) gets what is left.
    """
    from img2dataset.downloader import is_disallowed

    key, url = row
    end = time.monotonic() + policy.timeout
    error = "no attempt"
    for _ in range(retries + 1):
        left = end - time.monotonic()
        if left <= 0.05:
            break
        try:
            answer = guarded_http.get(
                url, replace(policy, timeout=left), {"User-Agent": user_agent(user_agent_token)}
            )
        except guarded_http.Refused as exc:
            return key, None, str(exc)
        except guarded_http.FetchFailed as exc:
            error = str(exc)
            if not exc.transient:
                break
            continue
        if disallowed_header_directives and is_disallowed(
            answer.headers, user_agent_token, disallowed_header_directives
        ):
            return key, None, "Use of image disallowed by X-Robots-Tag directive"
        return key, io.BytesIO(answer.body), None
    return key, None, error


@dataclass
class GuardedDownloader:
    """img2dataset's shard downloader, with every URL fetched by ``guarded_fetch`` (picklable: runs in workers)."""

    inner: Any
    policy: guarded_http.UrlPolicy

    def __call__(self, shard):
        import img2dataset.downloader as impl

        own = impl.download_image_with_retry
        impl.download_image_with_retry = functools.partial(guarded_fetch, policy=self.policy)
        try:
            return self.inner(shard)
        finally:
            impl.download_image_with_retry = own


@contextlib.contextmanager
def _guarded_downloads(policy: guarded_http.UrlPolicy) -> Iterator[None]:
    """While img2dataset's ``download`` runs, the downloader it builds is wrapped in GuardedDownloader."""
    import img2dataset.downloader as impl

    main = importlib.import_module(
        "img2dataset.main"
    )  # the package's ``main`` attribute is a function of that name
    if not callable(getattr(impl, "download_image_with_retry", None)) or not hasattr(main, "Downloader"):
        raise SusxError(
            "this img2dataset version cannot be guarded",
            hint="install img2dataset 1.47 (pip install 'susx[retrieval]')",
        )
    own = main.Downloader
    main.Downloader = lambda **kwargs: GuardedDownloader(own(**kwargs), policy)
    try:
        yield
    finally:
        main.Downloader = own


def _import_img2dataset():
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        from img2dataset import download
        from img2dataset.resizer import Resizer
    except ImportError as exc:
        raise missing_extra("img2dataset", "retrieval") from exc
    return download, Resizer


# ----------------------------------------------------------------------------------------- running img2dataset


def _count_done(out_dir: Path, output_format: str) -> int:
    done = 0
    finished = set()
    for stats in out_dir.glob("*_stats.json"):
        try:
            done += int(json.loads(stats.read_text()).get("count", 0))
            finished.add(stats.name.split("_")[0])
        except (OSError, ValueError):
            continue
    if output_format == "files":
        for shard in out_dir.iterdir() if out_dir.is_dir() else []:
            if shard.is_dir() and shard.name not in finished and shard.name.isdigit():
                done += sum(1 for _ in shard.glob("*.json"))
    return done


@contextlib.contextmanager
def _quiet_library(log_path: Path) -> Iterator[None]:
    """img2dataset prints progress on stdout (ours is for paths): send its stdout, and its children's, to a log.

    Its tqdm bars are switched off (TQDM_DISABLE, inherited by the spawned workers); our own bar polls
    the output folder instead. It also installs a SIGINT handler that exits with status 0: the previous
    handler is put back afterwards, and an exit it causes is turned back into an interruption.
    """
    sys.stdout.flush()
    log = open(log_path, "ab")  # noqa: SIM115
    saved_fd = os.dup(1)
    saved_stdout = sys.stdout
    saved_env = os.environ.get("TQDM_DISABLE")
    saved_sigint = signal.getsignal(signal.SIGINT)
    import img2dataset.distributor as distributor

    saved_tqdm = distributor.tqdm  # the parent's bar: tqdm read TQDM_DISABLE when it was imported
    distributor.tqdm = lambda iterable, *args, **kwargs: iterable
    os.dup2(log.fileno(), 1)
    sys.stdout = io.TextIOWrapper(open(os.dup(log.fileno()), "wb"), write_through=True)  # noqa: SIM115
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    except SystemExit as exc:  # img2dataset's SIGINT handler
        raise KeyboardInterrupt from exc
    finally:
        sys.stdout.flush()
        sys.stdout.close()
        sys.stdout = saved_stdout
        distributor.tqdm = saved_tqdm
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        log.close()
        if saved_env is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = saved_env
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, saved_sigint)


def run_img2dataset(
    rows: list[dict[str, Any]], out_dir: Path, opts: DownloadOptions, description: str = "download"
) -> None:
    """Download ``rows`` (cid, url, caption) into the fresh folder ``out_dir`` with img2dataset."""
    from susx_cli.progress import bar

    download, _ = _import_img2dataset()
    bad = [r["url"] for r in rows if not is_fetchable(r["url"])]
    if bad:
        raise SusxError(f"internal: refusing to fetch non-http(s) URL {bad[0]!r}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    url_list = state.url_list_path(out_dir)
    state.write_url_list(url_list, rows)
    kwargs = dict(
        url_list=str(url_list),
        output_folder=str(out_dir),
        input_format="parquet",
        url_col="url",
        caption_col="caption",
        save_additional_columns=["cid"],
        output_format=opts.output_format,
        processes_count=opts.processes,
        thread_count=opts.threads,
        timeout=opts.timeout,
        retries=opts.retries,
        distributor=opts.distributor,
        number_sample_per_shard=opts.samples_per_shard,
        disable_all_reencoding=True,
        encode_format=RAW_EXT,
        compute_hash="sha256",
        extract_exif=False,
        user_agent_token=opts.user_agent_token,
        incremental_mode="incremental",
        enable_wandb=False,
    )
    kwargs.update(opts.extra)
    stop = threading.Event()
    with bar(description, total=len(rows), unit="url") as progress:

        def poll() -> None:
            seen = 0
            while not stop.wait(0.5):
                now = _count_done(out_dir, opts.output_format) if out_dir.exists() else 0
                if now > seen:
                    progress.advance(now - seen)
                    seen = now

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            with _quiet_library(state.log_path(out_dir)), _guarded_downloads(opts.policy()):
                download(**kwargs)
        except (KeyboardInterrupt, SusxError):
            raise
        except Exception as exc:
            raise SusxError(
                f"img2dataset failed: {exc.__class__.__name__}: {exc}"[:400],
                hint=f"see {state.log_path(out_dir)}; check the --download-* options",
            ) from exc
        finally:
            stop.set()
            watcher.join()
        progress.update(completed=len(rows))
    url_list.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------- reading results


def _shard_rows(parquet: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(
            parquet, columns=["cid", "url", "key", "status", "error_message", "sha256"]
        ).to_pylist()
    except Exception:  # torn by an interruption: the per-sample files still say what succeeded
        return []


def _files_samples(shard_dir: Path) -> Iterator[tuple[dict[str, Any], Path]]:
    for meta_path in sorted(shard_dir.glob("*.json")):
        try:
            meta = json.loads(
                meta_path.read_text(encoding="utf-8")
            )  # written after the image: a sample is whole
        except (OSError, ValueError):
            continue
        image = meta_path.with_suffix(f".{RAW_EXT}")
        if image.is_file():
            yield meta, image


def _tar_samples(tar_path: Path) -> dict[str, dict[str, bytes]]:
    """Members of a (possibly truncated) webdataset tar, grouped by sample key."""
    samples: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(tar_path, "r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                data = handle.read()
                if len(data) != member.size:
                    break
                key, _, ext = member.name.partition(".")
                samples.setdefault(key, {})[ext] = data
    except (tarfile.TarError, EOFError, OSError):
        pass  # a tar cut short by an interruption: keep what was read
    return samples


def read_results(out_dir: Path, output_format: str) -> dict[str, Result]:
    """Every result img2dataset left in ``out_dir``, complete shards and whatever an interrupted one kept."""
    out_dir = Path(out_dir)
    results: dict[str, Result] = {}
    if not out_dir.is_dir():
        return results
    shard_names = sorted(
        {p.name.split("_")[0].split(".")[0] for p in out_dir.iterdir() if p.name[:1].isdigit()}
    )
    for shard in shard_names:
        finished = (out_dir / f"{shard}_stats.json").exists()
        tar = _tar_samples(out_dir / f"{shard}.tar") if output_format == "webdataset" else {}

        def image_bytes(key: str, tar=tar, shard=shard) -> bytes | None:
            if output_format == "webdataset":
                return tar.get(key, {}).get(RAW_EXT)
            path = out_dir / shard / f"{key}.{RAW_EXT}"
            return path.read_bytes() if path.is_file() else None

        if finished:
            for row in _shard_rows(out_dir / f"{shard}.parquet"):
                cid = str(row["cid"])
                data = image_bytes(row["key"]) if row["status"] == "success" else None
                error = None if data is not None else (row.get("error_message") or row["status"] or "no data")
                results[cid] = Result(cid, row["url"], data, error, row.get("sha256"))
            continue
        if output_format == "files":
            for meta, image in _files_samples(out_dir / shard):
                results[str(meta["cid"])] = Result(
                    str(meta["cid"]), meta["url"], image.read_bytes(), None, meta.get("sha256")
                )
        else:
            for members in tar.values():
                if RAW_EXT in members and "json" in members:
                    try:
                        meta = json.loads(members["json"])
                    except ValueError:
                        continue
                    results[str(meta["cid"])] = Result(
                        str(meta["cid"]), meta["url"], members[RAW_EXT], None, meta.get("sha256")
                    )
    return results


def fetch_round(
    round_dir: Path,
    rows: list[dict[str, Any]] | None,
    opts: DownloadOptions,
    have: set[str] | frozenset = frozenset(),
) -> tuple[list[dict[str, Any]], dict[str, Result]]:
    """(the round's rows, results by cid), downloading only the rows that have no result yet.

    ``rows`` (cid, url, caption) fixes the round's list when the round starts; on resume pass None
    and the recorded list is used. URLs in ``have`` are available to the caller already: never fetched,
    no result returned for them.
    """
    rnd = state.DownloadRound(Path(round_dir))
    rnd.root.mkdir(parents=True, exist_ok=True)
    if not rnd.listing.exists():
        if rows is None:
            raise SusxError(f"internal: round {rnd.root} has no URL list")
        state.write_url_list(rnd.listing, rows)
    wanted = state.read_url_list(rnd.listing)
    results: dict[str, Result] = {}
    outs = rnd.outputs()
    for out in outs:
        results.update(read_results(out, opts.output_format))
    by_url = {r.url: r for r in results.values()}
    unique, seen = [], set(have)
    for r in wanted:  # a URL wanted twice (two classes) is fetched once
        if str(r["cid"]) not in results and r["url"] not in by_url and r["url"] not in seen:
            seen.add(r["url"])
            unique.append(r)
    if unique:
        out = rnd.next_output()
        resumed = " (rest of an interrupted round)" if outs else ""
        run_img2dataset(unique, out, opts, description=f"download{resumed}")
        fresh = read_results(out, opts.output_format)
        results.update(fresh)
        by_url.update({r.url: r for r in fresh.values()})
    answer = {}
    for r in wanted:
        cid = str(r["cid"])
        if r["url"] in have:
            continue
        got = results.get(cid) or by_url.get(r["url"])
        if got is None:  # img2dataset lost the row (a shard that failed twice): say so, do not retry forever
            got = Result(cid, r["url"], None, "no result from img2dataset")
        answer[cid] = Result(cid, r["url"], got.data, got.error, got.source_sha256)
    return wanted, answer


# ----------------------------------------------------------------------------------------- checking


def check_image(data: bytes, opts: DownloadOptions) -> tuple[bytes, str]:
    """Fully decode the original bytes, then resize/encode with img2dataset's Resizer: (bytes, extension).

    Raises InvalidImage for HTML pages, truncated or otherwise undecodable files, and images the
    Resizer rejects (too small, bad aspect ratio).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.width < 1 or img.height < 1:
                raise InvalidImage("empty image")
    except UnidentifiedImageError:
        head = data[:64].lstrip().lower()
        kind = (
            "an HTML page"
            if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head"))
            else "not an image"
        )
        raise InvalidImage(kind) from None
    except InvalidImage:
        raise
    except Exception as exc:  # OSError "image file is truncated", decompression bombs, broken headers
        if "truncated" in str(exc):
            raise InvalidImage("truncated image") from None
        raise InvalidImage(f"undecodable image ({exc.__class__.__name__}: {exc})"[:160]) from None
    resizer = _resizer(opts)
    out, _, _, _, _, error = resizer(io.BytesIO(data))
    if error is not None or out is None:
        raise InvalidImage(f"rejected by the resizer: {error}")
    return out, opts.encode_format


_RESIZERS: dict[tuple, Any] = {}


def _resizer(opts: DownloadOptions):
    key = tuple(sorted(opts.recorded().items()))
    if key not in _RESIZERS:
        _, Resizer = _import_img2dataset()
        _RESIZERS[key] = Resizer(
            image_size=opts.image_size,
            resize_mode=opts.resize_mode,
            resize_only_if_bigger=opts.resize_only_if_bigger,
            encode_format=opts.encode_format,
            encode_quality=opts.encode_quality,
            min_image_size=opts.min_image_size,
            max_aspect_ratio=opts.max_aspect_ratio,
        )
    return _RESIZERS[key]
