"""The one loop that embeds images into a feature file, and class text weights from prompts.

``embed_image_set`` is the single path from images to an HDF5 feature file, for every layout: support
folders, class folders, CoOp splits, unlabelled folders and webdataset tar shards (an ``ImageSet`` whose
items are ``TarMember``s). It skips an up-to-date output, resumes a ``.partial`` one, decodes and
preprocesses in worker processes, skips unreadable images (listing them), and marks the file complete
only at the end. It lives here, below ``stages/``, so that sources (the pool) embed with it too.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from susx_cli.artifacts import common
from susx_cli.artifacts.schema import ModelIdentity
from susx_cli.encoder import TEXT_BATCH, Encoder, clip_precision, load_encoder, recorded_pretrained
from susx_cli.errors import SusxError
from susx_cli.imagesets import ImageItem, ImageSet, changed_after_curate, recorded_mismatch
from susx_cli.progress import bar, info, warn
from susx_cli.sharding import Shard

if TYPE_CHECKING:
    from susx_cli.artifacts import hdf5


def class_text_weights(encoder: Encoder, texts_per_class: list[list[str]], batch_size: int = TEXT_BATCH):
    """Text classifier weights (C, D) float32: per class, the mean of its unit text embeddings, re-normalised."""
    import numpy as np
    import torch

    flat = [t for texts in texts_per_class for t in texts]
    owner = torch.tensor([c for c, texts in enumerate(texts_per_class) for _ in texts], dtype=torch.long)
    sums = torch.zeros(len(texts_per_class), encoder.identity.embed_dim, dtype=torch.float64)
    with bar("embed texts", total=len(flat), unit="text") as progress:
        for start in range(0, len(flat), batch_size):
            emb = encoder.encode_texts(flat[start : start + batch_size], batch_size)
            sums.index_add_(0, owner[start : start + batch_size], torch.from_numpy(np.asarray(emb)).double())
            progress.advance(len(emb))
    return torch.nn.functional.normalize(sums, dim=-1).float().numpy()


# ---------------------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class TarMember:
    """An image stored in a tar shard: ``size`` bytes at ``offset`` of ``path`` (read without tarfile)."""

    path: Path
    offset: int
    size: int
    label: int  # -1: tar shards are unlabelled pools
    key: str  # ``<tar name>/<member name>``


EmbedItem = ImageItem | TarMember


def default_workers() -> int:
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def _read_bytes(item: EmbedItem) -> bytes:
    if isinstance(item, TarMember):
        with open(item.path, "rb") as handle:
            handle.seek(item.offset)
            return handle.read(item.size)
    return Path(item.path).read_bytes()


# Random resized crop of the few-shot protocol (docs/METHOD.md, "Augmented support features").
CROP_SCALE = (0.5, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10


def view_generator(seed: int, key: str, view: int):
    """A torch.Generator seeded from sha256(seed, image key, pass index): the draws of one view of one
    image depend on nothing else (not on batch size, loader workers or shards)."""
    import torch

    digest = hashlib.sha256(f"{seed}\0{key}\0{view}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _uniform(gen, lo: float, hi: float) -> float:
    import torch

    return lo + (hi - lo) * float(torch.rand(1, generator=gen, dtype=torch.float64))


def crop_box(width: int, height: int, gen) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop covering CROP_SCALE of the area with aspect ratio in CROP_RATIO;
    after CROP_ATTEMPTS misses, the largest centred crop whose ratio is in range."""
    import torch

    area = width * height
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    for _ in range(CROP_ATTEMPTS):
        target = area * _uniform(gen, *CROP_SCALE)
        ratio = math.exp(_uniform(gen, log_lo, log_hi))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=gen))
            left = int(torch.randint(0, width - w + 1, (1,), generator=gen))
            return top, left, h, w
    ratio = width / height
    if ratio < CROP_RATIO[0]:
        w, h = width, round(width / CROP_RATIO[0])
    elif ratio > CROP_RATIO[1]:
        w, h = round(height * CROP_RATIO[1]), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@dataclass(frozen=True)
class Augmentation:
    """``passes`` random views per image: a random resized crop (CROP_SCALE of the area, bicubic, to the
    model's input ``size``), a random horizontal flip, then the model's normalisation (``mean``, ``std``).
    Picklable, so DataLoader workers run it."""

    passes: int
    seed: int
    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def views(self, img, key: str):
        """(passes, 3, H, W) float32 views of an RGB PIL image; view v is drawn from view_generator(seed, key, v)."""
        import torch
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        out = []
        for view in range(self.passes):
            gen = view_generator(self.seed, key, view)
            top, left, h, w = crop_box(img.width, img.height, gen)
            crop = TF.resized_crop(
                img, top, left, h, w, list(self.size), InterpolationMode.BICUBIC, antialias=True
            )
            if float(torch.rand(1, generator=gen)) < 0.5:
                crop = TF.hflip(crop)
            out.append(TF.normalize(TF.to_tensor(crop), list(self.mean), list(self.std)))
        return torch.stack(out)


def augmentation(encoder: Encoder, passes: int, seed: int) -> Augmentation | None:
    """The augmentation of ``passes`` views with the encoder's input size and normalisation; None for one
    pass, which is the plain preprocessing (features bit-identical to an embedding without the option)."""
    if passes <= 1:
        return None
    cfg = encoder.input_config
    return Augmentation(passes, seed, tuple(cfg["size"]), tuple(cfg["mean"]), tuple(cfg["std"]))


def mean_of_views(encoder: Encoder, views):
    """(B, D) float32 unit rows from (B, K, 3, H, W) views: the K raw embeddings of an image averaged, then
    L2-normalised (docs/METHOD.md); and (B, K, D) float32, each view's own embedding L2-normalised."""
    import numpy as np

    b, k = views.shape[:2]
    raw = np.asarray(encoder.encode_images(views.flatten(0, 1), normalize=False), dtype=np.float64)
    raw = raw.reshape(b, k, -1)
    mean = raw.mean(axis=1)
    unit_views = raw / np.linalg.norm(raw, axis=2, keepdims=True)
    return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32), unit_views.astype(
        np.float32
    )


class _ImageDataset:
    """Read + PIL decode + model preprocessing (or K augmented views); a failed decode yields the reason
    instead of a tensor.

    The bytes decoded are the bytes checked: an item with a recorded size / sha256 (a support folder's
    image) whose bytes differ yields the mismatch ('size' or 'sha256') instead, and the run stops.
    """

    def __init__(self, items: Sequence[EmbedItem], preprocess, augment: Augmentation | None = None):
        self.items, self.preprocess, self.augment = items, preprocess, augment

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from PIL import Image

        item = self.items[i]
        try:
            data = _read_bytes(item)
            if isinstance(item, ImageItem):
                mismatch = recorded_mismatch(data, item.sha256, item.size)
                if mismatch:
                    return None, item.label, item.key, "", mismatch
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                rgb = img.convert("RGB")
                tensor = self.preprocess(rgb) if self.augment is None else self.augment.views(rgb, item.key)
            return tensor, item.label, item.key, "", None
        except Exception as exc:  # unreadable, truncated or not an image: skip it, never substitute
            return None, item.label, item.key, _reason(exc), None


def _reason(exc: Exception) -> str:
    """Why an image was skipped, without object addresses (``<_io.BytesIO object at 0x...>``), so the
    recorded reason is the same in every run, shard and worker."""
    text = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the image bytes", str(exc))
    return f"{exc.__class__.__name__}: {text}"[:200]


def _collate(batch):
    import torch

    good = [b for b in batch if b[0] is not None]
    bad = [(b[2], b[3]) for b in batch if b[0] is None and b[4] is None]
    changed = [(b[2], b[4]) for b in batch if b[4] is not None]
    tensors = torch.stack([b[0] for b in good]) if good else None
    return tensors, [b[1] for b in good], [b[2] for b in good], bad, changed, len(batch)


def embed_items(
    encoder: Encoder,
    items: Sequence[EmbedItem],
    writer: hdf5.FeatureWriter,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    label: str = "embed images",
    augment: Augmentation | None = None,
) -> None:
    """Append the features of ``items[writer.resumed_from:]`` to ``writer``, batch by batch, in order.

    Each batch of ``batch_size`` items becomes one forward pass over its readable images (over their
    ``augment.passes`` views each, averaged per image, with ``augment``; the views' own unit rows go to the
    file too when ``writer.views`` says it keeps them); unreadable ones are warned about
    and recorded as skipped; an image that differs from its recorded size or sha256 stops the run with an
    error (the batches before it stay written, so the run resumes once the file is restored).
    """
    import numpy as np
    import torch

    start = writer.resumed_from
    loader = torch.utils.data.DataLoader(
        _ImageDataset(items[start:], encoder.preprocess, augment),
        batch_size=batch_size,
        shuffle=False,
        num_workers=default_workers() if workers is None else workers,
        collate_fn=_collate,
    )
    empty = np.zeros((0, encoder.identity.embed_dim), dtype=np.float32)
    no_views = np.zeros((0, writer.views, encoder.identity.embed_dim), dtype=np.float32)
    with bar(label, total=len(items), unit="img", completed=start) as progress:
        for tensors, labels, keys, bad, changed, consumed in loader:
            if changed:  # before this batch is written: the rows so far stay resumable
                key, what = changed[0]
                raise changed_after_curate(next(it.path for it in items if it.key == key), what)
            views = no_views
            if tensors is None:
                feats = empty
            elif augment is None:
                feats = encoder.encode_images(tensors)
            else:
                feats, views = mean_of_views(encoder, tensors)
            for key, reason in bad:
                warn(f"skipped unreadable image {key}: {reason}")
            writer.append(
                feats, np.asarray(labels, dtype=np.int64), keys, bad, views=views if writer.views else None
            )
            progress.advance(consumed)


# Options a part file of a sharded run adds to those of the single-process run.
SHARD_OPTION_KEYS = ("num_shards", "shard_index", "item_start", "item_stop")


def shard_range(shard: Shard, n: int, align: int = 1) -> tuple[int, int]:
    """The contiguous item range [start, stop) of ``shard`` among ``n`` items: parts join in order.

    Inner bounds are rounded down to a multiple of ``align`` (the batch size), so every forward pass
    sees the batch a single process would: features equal bit for bit, not only to rounding.
    """

    def bound(i: int) -> int:
        return n if i == shard.count else (i * n // shard.count) // align * align

    return bound(shard.index), bound(shard.index + 1)


def image_set_provenance(
    image_set: ImageSet,
    model: str,
    pretrained: str | None,
    precision: str,
    what: str,
    class_inputs: Sequence[dict[str, Any]] = (),
    augment_passes: int = 1,
    augment_seed: int = 0,
    keep_views: bool = False,
) -> dict[str, Any]:
    """The provenance a single-process feature file of ``image_set`` records (options and inputs).

    Augmentation options appear only with several passes (and ``keep_views`` only when set): one pass is
    the plain embedding of before.
    """
    options = {
        "input_layout": image_set.layout,
        **image_set.options,
        "model": model,
        "pretrained": recorded_pretrained(pretrained),
        "precision": clip_precision(precision),
        "num_items": len(image_set.items),
    }
    if augment_passes != 1:
        options |= {"augment_passes": augment_passes, "augment_seed": augment_seed}
    if keep_views:
        options["keep_views"] = True
    inputs = image_set.inputs or [{"path": what, "kind": image_set.layout, "sha256": None}]
    return common.provenance(options, [*inputs, *class_inputs])


def augment_attrs(passes: int, seed: int) -> dict[str, int]:
    """The attributes a feature file records about its views: passes always, the seed when it was used."""
    return {"augment_passes": passes, **({"augment_seed": seed} if passes > 1 else {})}


@dataclass
class EmbedSummary:
    rows: int
    skipped: int
    model: ModelIdentity


def embed_image_set(
    image_set: ImageSet,
    output: Path,
    *,
    model: str,
    pretrained: str | None,
    classes: list[str],
    class_inputs: Sequence[dict[str, Any]] = (),
    what: str,
    device: str | None = None,
    precision: str = "fp32",
    batch_size: int = 64,
    workers: int | None = None,
    overwrite: bool = False,
    label: str = "embed images",
    shard: Shard | None = None,
    augment_passes: int = 1,
    augment_seed: int = 0,
    keep_views: bool = False,
) -> EmbedSummary | None:
    """Embed ``image_set`` into the feature file ``output``; None when it is already up to date.

    ``what`` names the images in errors; ``classes`` (and the files they came from, ``class_inputs``) are
    recorded in the file. With a ``shard`` of a multi-shard run, ``output`` is that shard's part file and
    holds only the contiguous item range ``shard_range``; its options add the shard keys
    (``SHARD_OPTION_KEYS``) to those of a single-process run, so dropping them recovers the latter.
    ``augment_passes`` > 1 embeds each image as the mean of that many augmented views (``Augmentation``),
    seeded by ``augment_seed``; the file records both (options and attributes). ``keep_views`` also keeps
    each view's unit row, (N, K, D) ``views`` beside the averaged rows.
    """
    from susx_cli.artifacts import hdf5  # lazy: h5py stays out of `susx --help`

    prov = image_set_provenance(
        image_set, model, pretrained, precision, what, class_inputs, augment_passes, augment_seed, keep_views
    )
    items = image_set.items
    sharded = shard is not None and shard.count > 1
    if sharded:
        start, stop = shard_range(shard, len(items), align=batch_size)
        items = items[start:stop]
        shard_options = {
            "num_shards": shard.count,
            "shard_index": shard.index,
            "item_start": start,
            "item_stop": stop,
        }
        prov["options"] |= shard_options
    if common.decide_existing(
        output, hdf5.existing_provenance(output, common.IMAGE_FEATURES), prov, overwrite
    ):
        info(f"{output} is up to date (same inputs and options); nothing to do")
        return None
    partial = output.with_name(output.name + hdf5.PARTIAL_SUFFIX)
    if overwrite and output.exists() and partial.exists():  # a partial run of the replaced options
        partial.unlink()

    encoder = load_encoder(model, pretrained, device=device, precision=precision)
    writer = hdf5.FeatureWriter(
        output,
        dim=encoder.identity.embed_dim,
        items_total=len(items),
        classes=classes,
        model=encoder.identity,
        prov=prov,
        chunk_rows=max(256, batch_size),
        views=augment_passes if keep_views else 0,
    )
    if writer.resumed_from:
        info(f"resuming {output}: {writer.resumed_from} of {len(items)} images already embedded")
    try:
        augment = augmentation(encoder, augment_passes, augment_seed)
        embed_items(
            encoder, items, writer, batch_size=batch_size, workers=workers, label=label, augment=augment
        )
        rows = int(writer.file["features"].shape[0])
        skipped = int(writer.file["skipped_keys"].shape[0])
        if rows == 0 and not sharded:  # a shard may hold no readable image; the join checks the whole
            raise SusxError(f"no image of {what} could be read", hint="check the image files")
        writer.finish(augment_attrs(augment_passes, augment_seed))
    finally:
        writer.close()
    return EmbedSummary(rows, skipped, encoder.identity)
