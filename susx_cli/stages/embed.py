"""`embed`: image features (support set, class folders, split, unlabelled) or the text classifier."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from susx_cli import imagesets
from susx_cli.artifacts import common, hdf5
from susx_cli.artifacts.prompts import read_prompts
from susx_cli.classnames import folder_key, read_class_file
from susx_cli.errors import SusxError
from susx_cli.progress import bar, info, warn
from susx_cli.stages.results import StageResult


def default_workers() -> int:
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def _model_options(model: str, pretrained: str | None, precision: str) -> dict[str, Any]:
    return {"model": model, "pretrained": pretrained or "none", "precision": precision}


def _read_class_list(classes_path: Path | None) -> tuple[list[str] | None, list[dict[str, Any]]]:
    if classes_path is None:
        return None, []
    names, fmt = read_class_file(classes_path)
    kind = common.PROMPTS if fmt == "prompts" else f"classes-{fmt}"
    return names, [common.identity(classes_path, kind)]


def _reconcile_classes(image_classes: list[str] | None, given: list[str] | None, what: str) -> list[str] | None:
    """The class list to record: the given one (prompts) after checking it names the same classes."""
    if given is None or image_classes is None:
        return given if given is not None else image_classes
    if [folder_key(c) for c in image_classes] != [folder_key(c) for c in given]:
        from susx_cli.classnames import check_same_classes

        check_same_classes(image_classes, given, what, "--classes")
    return given


class _ImageDataset:
    """PIL decode + model preprocessing; a failed decode yields the reason instead of a tensor."""

    def __init__(self, items: list[imagesets.ImageItem], preprocess):
        self.items, self.preprocess = items, preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from PIL import Image

        item = self.items[i]
        try:
            with Image.open(item.path) as img:
                img.load()
                tensor = self.preprocess(img.convert("RGB"))
            return tensor, item.label, item.key, ""
        except Exception as exc:  # unreadable, truncated or not an image: skip it, never substitute
            return None, item.label, item.key, f"{exc.__class__.__name__}: {exc}"[:200]


def _collate(batch):
    import torch

    good = [b for b in batch if b[0] is not None]
    bad = [(b[2], b[3]) for b in batch if b[0] is None]
    tensors = torch.stack([b[0] for b in good]) if good else None
    return tensors, [b[1] for b in good], [b[2] for b in good], bad, len(batch)


def embed_images(
    input_path: Path,
    output: Path,
    *,
    model: str,
    pretrained: str | None,
    classes_path: Path | None = None,
    class_names: list[str] | None = None,
    split: str | None = None,
    image_root: Path | None = None,
    shots: int | None = None,
    seed: int = 0,
    unlabelled: bool = False,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | None = None,
    precision: str = "fp32",
    overwrite: bool = False,
) -> StageResult:
    """Embed images into an HDF5 feature file, streaming in batches; resumes an interrupted run."""
    import numpy as np
    import torch

    given, class_inputs = _read_class_list(classes_path)
    if given is None and class_names is not None:
        given = class_names
    image_set = imagesets.resolve(
        input_path, classes=given, split=split, image_root=image_root, shots=shots, seed=seed, unlabelled=unlabelled
    )
    classes = _reconcile_classes(image_set.classes, given, str(input_path)) or []
    options = {
        "input_layout": image_set.layout,
        **image_set.options,
        **_model_options(model, pretrained, precision),
        "num_items": len(image_set.items),
    }
    inputs = image_set.inputs or [{"path": str(input_path), "kind": image_set.layout, "sha256": None}]
    prov = common.provenance(options, inputs + class_inputs)
    if common.decide_existing(output, hdf5.existing_provenance(output, common.IMAGE_FEATURES), prov, overwrite):
        info(f"{output} is up to date (same inputs and options); nothing to do")
        return StageResult("embed", [output], skipped=True)
    if overwrite and output.exists():
        partial = output.with_name(output.name + hdf5.PARTIAL_SUFFIX)
        if partial.exists():
            partial.unlink()

    loaded = _load(model, pretrained, device, precision)
    items = image_set.items
    writer = hdf5.FeatureWriter(
        output,
        dim=loaded.identity.embed_dim,
        items_total=len(items),
        classes=classes,
        model=loaded.identity,
        prov=prov,
        chunk_rows=max(256, batch_size),
    )
    start = writer.resumed_from
    if start:
        info(f"resuming {output}: {start} of {len(items)} images already embedded")
    skipped_all: list[tuple[str, str]] = []
    try:
        loader = torch.utils.data.DataLoader(
            _ImageDataset(items[start:], loaded.preprocess),
            batch_size=batch_size,
            shuffle=False,
            num_workers=default_workers() if workers is None else workers,
            collate_fn=_collate,
        )
        with bar("embed images", total=len(items), unit="img", completed=start) as progress, torch.no_grad():
            for tensors, labels, keys, bad, consumed in loader:
                feats = np.zeros((0, loaded.identity.embed_dim), dtype=np.float32)
                if tensors is not None:
                    out = loaded.model.encode_image(tensors.to(loaded.device, loaded.dtype)).float()
                    feats = torch.nn.functional.normalize(out, dim=-1).cpu().numpy()
                for key, reason in bad:
                    warn(f"skipped unreadable image {key}: {reason}")
                skipped_all += bad
                writer.append(feats, np.asarray(labels, dtype=np.int64), keys, consumed, bad)
                progress.advance(consumed)
        n_rows = int(writer.file["features"].shape[0])
        n_skipped = int(writer.file["skipped_keys"].shape[0])
        if n_rows == 0:
            raise SusxError(f"no image of {input_path} could be read", hint="check the image files")
        writer.finish()
    finally:
        writer.close()
    summary = {"rows": n_rows, "skipped": n_skipped, "model": loaded.identity.describe(), "layout": image_set.layout}
    return StageResult("embed", [output], summary=summary)


def _load(model: str, pretrained: str | None, device: str | None, precision: str):
    from susx_cli.adapters.openclip import load_model

    loaded = load_model(model, pretrained, device=device, precision=precision)
    if loaded.identity.random_weights:
        warn(f"{model} has RANDOM weights (no --pretrained given): results only show that the pipeline runs")
    return loaded


def encode_texts(loaded, texts_per_class: list[list[str]], batch_size: int = 256):
    """Text classifier weights (C, D): per class, mean of L2-normalised text embeddings, re-normalised."""
    import torch

    flat = [t for texts in texts_per_class for t in texts]
    owner = torch.tensor([c for c, texts in enumerate(texts_per_class) for _ in texts], dtype=torch.long)
    sums = torch.zeros(len(texts_per_class), loaded.identity.embed_dim, dtype=torch.float64)
    with bar("embed texts", total=len(flat), unit="text") as progress, torch.no_grad():
        for start in range(0, len(flat), batch_size):
            tokens = loaded.tokenizer(flat[start : start + batch_size]).to(loaded.device)
            emb = loaded.model.encode_text(tokens).float()
            emb = torch.nn.functional.normalize(emb, dim=-1).cpu().double()
            sums.index_add_(0, owner[start : start + batch_size], emb)
            progress.advance(len(tokens))
    return torch.nn.functional.normalize(sums, dim=-1).float().numpy()


def embed_texts(
    prompts_path: Path,
    output: Path,
    *,
    model: str,
    pretrained: str | None,
    pool: str | None = None,
    batch_size: int = 256,
    device: str | None = None,
    precision: str = "fp32",
    overwrite: bool = False,
) -> StageResult:
    """Embed a prompts file's pool into the text classifier HDF5 (weights C x D, texts per class)."""
    import numpy as np

    prompts = read_prompts(prompts_path)
    pool = pool or prompts.default_pool
    texts = prompts.pool_texts(pool)
    options = {"pool": pool, **_model_options(model, pretrained, precision)}
    prov = common.provenance(options, [common.identity(prompts_path, common.PROMPTS)])
    if common.decide_existing(output, hdf5.existing_provenance(output, common.TEXT_CLASSIFIER), prov, overwrite):
        info(f"{output} is up to date (same inputs and options); nothing to do")
        return StageResult("embed", [output], skipped=True)
    loaded = _load(model, pretrained, device, precision)
    weights = encode_texts(loaded, texts, batch_size)
    tc = hdf5.TextClassifier(
        weights=weights,
        num_texts=np.array([len(t) for t in texts]),
        classes=prompts.classes,
        model=loaded.identity,
        pool=pool,
        provenance=prov,
    )
    hdf5.write_text_classifier(output, tc)
    return StageResult(
        "embed", [output], summary={"classes": len(texts), "texts": sum(map(len, texts)), "pool": pool}
    )


def embed(input_path: Path, output: Path, **kwargs) -> StageResult:
    """Dispatch on the input: prompts.json -> text classifier; anything else -> image features."""
    if input_path.is_file() and input_path.suffix.lower() == ".json":
        data = common.read_json(input_path)
        if isinstance(data, dict) and data.get("kind") == common.PROMPTS:
            image_only = ("classes_path", "split", "image_root", "shots", "seed", "unlabelled", "workers")
            used = [k for k in image_only if kwargs.get(k) not in (None, False, 0)]
            if used:
                raise SusxError(
                    f"{', '.join('--' + u.replace('_path', '').replace('_', '-') for u in used)} apply to images, "
                    f"but {input_path} is a prompts file",
                    hint="drop those options to embed the text classifier",
                )
            text_kwargs = {k: v for k, v in kwargs.items() if k not in image_only}
            text_kwargs["batch_size"] = max(kwargs.get("batch_size", 256), 256)
            return embed_texts(input_path, output, **text_kwargs)
    kwargs.pop("pool", None)
    return embed_images(input_path, output, **kwargs)
