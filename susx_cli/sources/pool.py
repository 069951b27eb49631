"""`curate --source pool`: retrieve each class's images from a local collection by CLIP text-to-image similarity.

The embedded default that needs no service: the pool (an image folder, or webdataset tars) is embedded
once by the encoder's embed loop (as `susx embed` does) into an HDF5 feature file that is kept as a cache, then every
class's photo prompt (or each of its CuPL sentences, results interleaved) is searched against it with
faiss or a plain matrix product, chunk by chunk, so a pool larger than memory works. The best M
readable, distinct images per class are copied into the support set.
"""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli import imagesets, runtime
from susx_cli.artifacts import common
from susx_cli.artifacts.prompts import Prompts
from susx_cli.artifacts.schema import check_same_model
from susx_cli.artifacts.support import SupportWriter
from susx_cli.classnames import slug
from susx_cli.embedding import TarMember, embed_image_set
from susx_cli.encoder import clip_precision, load_encoder, recorded_pretrained
from susx_cli.errors import SusxError
from susx_cli.imagesets import IMAGE_EXTS
from susx_cli.options import option
from susx_cli.progress import bar, warn
from susx_cli.sources import ranked
from susx_cli.sources.base import FromOptions, WorkUnit, require_per_class

SEARCHES = ("auto", "faiss", "matmul")
CHUNK_ROWS = 65536


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTS


@dataclass
class PoolLayout:
    kind: str  # folder | tars
    root: Path | None = None
    tars: list[Path] = field(default_factory=list)


def resolve_pool(pool: str | Path) -> PoolLayout:
    """A folder of images (searched recursively), one .tar, a folder of .tar files, or a glob of tars."""
    text = str(pool)
    if any(ch in text for ch in "*?["):
        import glob

        tars = sorted(Path(p) for p in glob.glob(text) if p.endswith(".tar"))
        if not tars:
            raise SusxError(f"no .tar files match {text!r}", hint="pass an image folder or webdataset tars")
        return PoolLayout("tars", tars=tars)
    path = Path(pool).expanduser()
    if not path.exists():
        raise SusxError(
            f"pool {path} does not exist", hint="pass --pool-images with an image folder or webdataset tars"
        )
    if path.is_file():
        if path.suffix != ".tar":
            raise SusxError(
                f"pool {path} is neither a folder nor a .tar file",
                hint="pass an image folder or webdataset tars",
            )
        return PoolLayout("tars", tars=[path])
    tars = sorted(path.glob("*.tar"))
    if tars and not any(p.is_file() and _is_image_name(p.name) for p in path.iterdir()):
        return PoolLayout("tars", tars=tars)
    return PoolLayout("folder", root=path)


def _has_images(layout: PoolLayout) -> bool:
    if layout.kind == "folder":
        return any(p.is_file() and _is_image_name(p.name) for p in layout.root.rglob("*"))
    for tar in layout.tars:
        try:
            with tarfile.open(tar, "r:") as handle:  # seekable: reads the headers, skips the data
                if any(m.isfile() and _is_image_name(m.name) for m in handle):
                    return True
        except (tarfile.TarError, OSError):
            continue
    return False


@dataclass
class PoolOptions:
    """`curate --source pool`: retrieve each class's images from a local collection by CLIP similarity."""

    pool: str | None = option(
        None, "--pool-images", help="image folder, .tar file, folder of .tar files or a tar glob."
    )
    per_class: int | None = option(None, "--per-class", "-k", help="images per class.")
    query: str = option(
        "photo",
        "--prompt-mode",
        choices=ranked.QUERY_TEXTS,
        help="photo (the class's photo prompt) | cupl (its CuPL sentences, results interleaved).",
    )
    candidates: int | None = option(
        None, "--candidates", help="ranked images per class to look through (default 4*M+16)."
    )
    features: Path | None = option(
        None,
        "--pool-features",
        help="feature file of the pool, made once and reused (default: one per pool and model under ~/.cache/susx).",
        path="input-output",
    )
    model: str = option(
        "ViT-B-32",
        "--clip-model",
        help="open_clip model that embeds the pool and the queries (ARCH or ARCH:TAG).",
    )
    pretrained: str | None = option(
        "openai",
        "--clip-pretrained",
        help="its weights (tag, checkpoint path, or 'none'; default: the --clip-model tag, else openai).",
    )
    device: str | None = option(
        "auto", "--device", help="auto (cuda:LOCAL_RANK under torchrun), cpu, cuda, cuda:1, mps."
    )
    precision: str = option(
        "auto", "--precision", choices=runtime.PRECISIONS, help="auto (fp32) | fp32 | fp16 | bf16."
    )
    search: str = option("auto", "--pool-search", choices=SEARCHES, help="auto | faiss | matmul.")

    def __post_init__(self) -> None:
        if self.pool is None:
            raise SusxError(
                "--source pool needs --pool-images (an image folder or webdataset tars)",
                hint="e.g. --pool-images ~/images",
            )
        require_per_class("pool", self.per_class, "images to keep per class")
        if self.search not in SEARCHES:
            raise SusxError(
                f"unknown --pool-search {self.search!r}", hint=f"use one of {', '.join(SEARCHES)}"
            )
        if self.candidates is not None and self.candidates < 1:
            raise SusxError(
                f"--candidates must be at least 1, got {self.candidates}", hint="e.g. --candidates 64"
            )
        self.precision = clip_precision(self.precision)  # auto is fp32, as the pool source has always read it
        self.device = runtime.resolve_device(self.device)  # fails fast; cuda:LOCAL_RANK under torchrun


@dataclass
class PoolSource(PoolOptions, FromOptions):
    batch_size: int = 64
    workers: int | None = None
    name: str = "pool"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.layout = resolve_pool(self.pool)

    @property
    def depth(self) -> int:
        """How many ranked images per class to walk through looking for M readable, distinct ones."""
        return self.candidates or 4 * self.per_class + 16

    def options(self) -> dict[str, Any]:
        return {
            "pool": common.resolved_path(self.pool),
            "layout": self.layout.kind,
            "per_class": self.per_class,
            "query": self.query,
            "candidates": self.depth,
            "model": self.model,
            "pretrained": recorded_pretrained(self.pretrained),
            "precision": self.precision,
        }

    def inputs(self) -> list[dict[str, Any]]:
        if self.layout.kind == "tars":
            files = [str(t) for t in self.layout.tars]
        else:
            files = [str(p) for p in self.layout.root.rglob("*") if p.is_file() and _is_image_name(p.name)]
        return [
            {
                "path": str(self.pool),
                "kind": f"pool-{self.layout.kind}",
                "sha256": ranked.listing_fingerprint(files),
                "files": len(files),
            }
        ]

    def units(self, prompts: Prompts) -> list[WorkUnit]:
        if not _has_images(self.layout):
            raise SusxError(
                f"pool {self.pool} holds no images",
                hint=f"put images ({', '.join(sorted(IMAGE_EXTS))}) in it, or webdataset tars with image members",
            )
        return ranked.class_units(prompts, self.query)

    # ------------------------------------------------------------------ features

    def features_path(self) -> Path:
        """--pool-features, else one cache file per (pool, model, weights), shared by every curate run.

        The cache folder is ``susx_cli.paths.cache_dir()``.
        """
        if self.features is not None:
            return Path(self.features)
        import hashlib

        from susx_cli.paths import cache_dir

        where = str(Path(str(self.pool)).expanduser().absolute())
        tag = hashlib.sha256(where.encode()).hexdigest()[:12]
        name = f"{slug(Path(where).name or 'pool', 32)}-{tag}-{slug(self.model, 32)}-{slug(self.pretrained or 'none', 32)}.h5"
        return cache_dir() / "pool-features" / name

    def _ensure_features(self, path: Path, num_shards: int) -> None:
        from susx_cli.artifacts import hdf5  # lazy: h5py stays out of `susx --help`

        complete = path.exists() and hdf5.read_kind(path) == common.IMAGE_FEATURES
        if num_shards > 1 and not complete:
            raise SusxError(
                f"the pool must be embedded once before sharded retrieval, and {path} is not there yet",
                hint=f"run `susx embed {self.pool} --unlabelled -o {path} --model {self.model} --pretrained "
                f"{self.pretrained or 'none'}` first, or pass that file with --pool-features",
            )
        try:
            self._embed(path, overwrite=False)
        except SusxError as exc:
            if not complete:
                raise
            if self.features is not None:
                raise SusxError(
                    f"--pool-features {path} was made from another pool, model or options ({exc.message})",
                    hint=f"embed {self.pool} with the same --clip-model and --clip-pretrained, or pass another path",
                ) from None
            warn(f"the pool changed since {path} was made: embedding it again")
            self._embed(path, overwrite=True)

    def _embed(self, path: Path, overwrite: bool) -> None:
        """Embed the pool into ``path`` as `susx embed --unlabelled` does (same loop, same file, same provenance)."""
        if self.layout.kind == "folder":
            image_set, what = imagesets.resolve(self.layout.root, unlabelled=True), str(self.layout.root)
        else:
            image_set, what = _tar_image_set(self.pool, self.layout.tars), f"the pool {self.pool}"
        from susx_cli.artifacts.lock import output_lock

        # The cache is shared by every curate run on this pool: one of them embeds it at a time.
        with output_lock(path):
            self._embed_locked(image_set, what, path, overwrite)

    def _embed_locked(self, image_set, what: str, path: Path, overwrite: bool) -> None:
        embed_image_set(
            image_set,
            path,
            model=self.model,
            pretrained=self.pretrained,
            classes=[],
            what=what,
            device=self.device,
            precision=self.precision,
            batch_size=self.batch_size,
            workers=self.workers,
            overwrite=overwrite,
            label="embed pool",
        )

    # ------------------------------------------------------------------ run

    def run(self, units: list[WorkUnit], writer: SupportWriter) -> dict[str, Any]:
        import numpy as np

        features = self.features_path()
        self._ensure_features(features, writer.num_shards)
        kept = Counter(ci for ci, _ in writer.done)
        todo = [u for u in units if kept[u.class_index] < self.per_class]
        stats: dict[int, dict[str, Any]] = {
            u.class_index: {
                "candidates": 0,
                "tried": 0,
                "valid": 0,
                "kept": kept[u.class_index],
                "invalid": 0,
                "duplicate": 0,
            }
            for u in units
        }
        if not todo:
            return {"features": str(features)}
        from susx_cli.artifacts import hdf5  # lazy: h5py stays out of `susx --help`

        encoder = load_encoder(
            self.model,
            self.pretrained,
            device=self.device,
            precision=self.precision,
            random_note="the pool ranking is meaningless (pipeline check only)",
        )
        check_same_model(
            hdf5.read_feature_model(features), encoder.identity, str(features), f"--clip-model {self.model}"
        )
        texts = [t for u in todo for t in u.payload["texts"]]
        owners = [u.class_index for u in todo for _ in u.payload["texts"]]
        queries = encoder.encode_texts(texts)
        scores, indices = search_features(features, queries, self.depth, self.search)
        keys = _keys_at(features, np.unique(indices[indices >= 0]))
        reader = _Reader(self.layout)
        total = sum(self.per_class - kept[u.class_index] for u in todo)
        try:
            with bar("copy pool images", total=total, unit="img") as progress:
                for u in todo:
                    ci = u.class_index
                    lists = [
                        [
                            {"index": int(i), "score": float(s), "query": texts[q]}
                            for s, i in zip(scores[q], indices[q], strict=True)
                            if i >= 0
                        ]
                        for q in range(len(texts))
                        if owners[q] == ci
                    ]
                    found = ranked.interleave(lists, self.depth, key="index")
                    stats[ci]["candidates"] = len(found)
                    self._fill_class(ci, found, keys, reader, writer, stats[ci], kept, progress)
        finally:
            reader.close()
        return {
            "features": str(features),
            "tried": sum(s["tried"] for s in stats.values()),
            "unreadable": sum(s["invalid"] for s in stats.values()),
            "duplicates": sum(s["duplicate"] for s in stats.values()),
            "class_stats": ranked.class_stats(writer.classes, stats, self.per_class),
        }

    def _fill_class(self, ci, found, keys, reader, writer, stat, kept, progress) -> None:
        from PIL import Image

        hashes = {row["sha256"] for (c, _), row in writer.done.items() if c == ci}
        for rank, cand in enumerate(found):
            if kept[ci] >= self.per_class:
                break
            key = f"r{rank:06d}"
            if writer.is_done(ci, key):
                continue
            origin = keys[cand["index"]]
            stat["tried"] += 1
            try:
                data = reader.read(origin)
                with Image.open(io.BytesIO(data)) as img:
                    img.load()
                    fmt = (img.format or Path(origin).suffix.lstrip(".") or "png").lower()
            except SusxError:
                raise
            except Exception as exc:
                warn(f"skipped unreadable pool image {origin}: {exc.__class__.__name__}")
                stat["invalid"] += 1
                continue
            stat["valid"] += 1
            digest = common.sha256_bytes(data)
            if digest in hashes:
                stat["duplicate"] += 1
                continue
            fields = {
                "source": "pool",
                "order": rank,
                "rank": rank,
                "score": cand["score"],
                "query": cand["query"],
                "origin": origin,
                "pool": str(self.pool),
            }
            writer.add(ci, key, data, {"jpeg": "jpg"}.get(fmt, fmt), fields)
            hashes.add(digest)
            kept[ci] += 1
            stat["kept"] = kept[ci]
            progress.advance()


def _topk_merge(best_s, best_i, new_s, new_i, k):
    """Keep the k best (score desc, index asc) of two candidate sets, row by row."""
    import numpy as np

    s = np.concatenate([best_s, new_s], axis=1)
    i = np.concatenate([best_i, new_i], axis=1)
    order = np.lexsort((i, -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)


def search_features(path: Path, queries, k: int, method: str = "auto", chunk_rows: int = CHUNK_ROWS):
    """Top-k rows of a feature file by inner product with each query: (scores, indices), best first.

    Reads the file in chunks of ``chunk_rows`` rows; faiss (brute force) or a numpy matrix product per chunk.
    """
    import numpy as np

    from susx_cli.artifacts import hdf5

    use_faiss = method == "faiss"
    if method == "auto":
        try:
            import faiss  # noqa: F401

            use_faiss = True
        except ImportError:
            use_faiss = False
    elif method == "faiss":
        try:
            import faiss  # noqa: F401
        except ImportError as exc:
            from susx_cli.errors import missing_extra

            raise missing_extra("faiss-cpu", "retrieval") from exc
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.zeros((len(q), 0), dtype=np.float32)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    with bar("search pool", total=hdf5.feature_rows(path), unit="img") as progress:
        for start, block in hdf5.iter_feature_chunks(path, chunk_rows):
            kk = min(k, len(block))
            if use_faiss:
                import faiss

                s, i = faiss.knn(q, block, kk, metric=faiss.METRIC_INNER_PRODUCT)
            else:
                sims = q @ block.T
                i = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
                s = np.take_along_axis(sims, i, axis=1)
            best_s, best_i = _topk_merge(best_s, best_i, s.astype(np.float32), i.astype(np.int64) + start, k)
            progress.advance(len(block))
    return best_s, best_i


def _keys_at(path: Path, indices) -> dict[int, str]:
    from susx_cli.artifacts import hdf5

    return hdf5.read_keys_at(path, indices)


class _Reader:
    """Bytes of a pool image by its feature-file key (relative path, or ``<tar name>/<member>``)."""

    def __init__(self, layout: PoolLayout):
        self.layout = layout
        self.tars = {t.name: t for t in layout.tars}
        self.open: dict[str, tarfile.TarFile] = {}

    def read(self, key: str) -> bytes:
        """The bytes under ``key``; a key that is absolute, has '..' or names no tar of the pool is refused
        (a damaged or hand-edited feature file must not make curate copy files from elsewhere)."""
        tar_name, _, member = key.partition("/")
        # Tar members are often named './x.jpg': that leading './' stays inside the tar.
        safe = common.is_safe_relative(
            key if self.layout.kind == "folder" else f"{tar_name}/{member.removeprefix('./')}"
        )
        if not safe or (self.layout.kind != "folder" and tar_name not in self.tars):
            raise SusxError(
                f"the pool feature file names an image {key!r} that is absolute, leaves the pool or is not in it",
                hint="the feature file is damaged or belongs to another pool: delete it (susx embeds the pool again) "
                "or pass the right --pool-features",
            )
        if self.layout.kind == "folder":
            return (self.layout.root / key).read_bytes()
        if tar_name not in self.open:
            self.open[tar_name] = tarfile.open(self.tars[tar_name], "r:")  # noqa: SIM115
        handle = self.open[tar_name].extractfile(member)
        if handle is None:
            raise OSError(f"{member} is not a file in {tar_name}")
        return handle.read()

    def close(self) -> None:
        for handle in self.open.values():
            handle.close()


def _tar_members(tars: list[Path]) -> list[TarMember]:
    """Every image member of the tars, in order, with its byte range; a broken tar ends early with a warning."""
    members: list[TarMember] = []
    with bar("index tars", total=len(tars), unit="tar") as progress:
        for tar in tars:
            try:
                with tarfile.open(tar, "r:") as handle:  # seekable: reads the headers, skips the data
                    for m in handle:
                        if m.isfile() and _is_image_name(m.name):
                            members.append(TarMember(tar, m.offset_data, m.size, -1, f"{tar.name}/{m.name}"))
            except (tarfile.TarError, OSError) as exc:
                warn(f"stopped reading {tar} early: {exc.__class__.__name__}: {exc}")
            progress.advance()
    return members


def _tar_image_set(pool: str | Path, tars: list[Path]) -> imagesets.ImageSet:
    """The image members of webdataset tars as an unlabelled image set (layout ``webdataset``)."""
    members = _tar_members(tars)
    if not members:
        raise SusxError(f"pool {pool} holds no images", hint="the tars have no image members")
    inputs = [
        {"path": str(pool), "kind": "webdataset", "sha256": ranked.listing_fingerprint(str(t) for t in tars)}
    ]
    return imagesets.ImageSet(None, members, "webdataset", inputs=inputs)
