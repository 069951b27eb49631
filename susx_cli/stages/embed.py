"""`embed`: image features (support set, class folders, split, unlabelled) or the text classifier."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

from susx_cli import imagesets, runtime
from susx_cli.artifacts import common, feature_parts, hdf5
from susx_cli.artifacts import outputs as output_paths
from susx_cli.artifacts.lock import output_lock
from susx_cli.artifacts.prompts import read_prompts
from susx_cli.artifacts.schema import ModelIdentity
from susx_cli.classnames import folder_key, read_class_file
from susx_cli.embedding import class_text_weights, embed_image_set, image_set_provenance
from susx_cli.encoder import clip_precision, load_encoder, recorded_pretrained
from susx_cli.errors import SusxError
from susx_cli.options import cli_fields
from susx_cli.progress import info
from susx_cli.sharding import Shard
from susx_cli.stages.options import EmbedOptions, check_loader_options
from susx_cli.stages.results import EmbedResult


def _model_options(model: str, pretrained: str | None, precision: str) -> dict[str, Any]:
    return {
        "model": model,
        "pretrained": recorded_pretrained(pretrained),
        "precision": clip_precision(precision),
    }


def _check_runtime(device: str | None, precision: str) -> None:
    """A bad --device or --precision fails before any reading or writing, even when nothing is left to do."""
    runtime.resolve_precision(clip_precision(precision), runtime.resolve_device(device))


def _read_class_list(classes_path: Path | None) -> tuple[list[str] | None, list[dict[str, Any]]]:
    if classes_path is None:
        return None, []
    names, fmt = read_class_file(classes_path)
    kind = common.PROMPTS if fmt == "prompts" else f"classes-{fmt}"
    return names, [common.identity(classes_path, kind)]


def _reconcile_classes(
    image_classes: list[str] | None, given: list[str] | None, what: str
) -> list[str] | None:
    """The class list to record: the given one (prompts) after checking it names the same classes."""
    if given is None or image_classes is None:
        return given if given is not None else image_classes
    if [folder_key(c) for c in image_classes] != [folder_key(c) for c in given]:
        from susx_cli.classnames import check_same_classes

        check_same_classes(image_classes, given, what, "--classes")
    return given


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
    augment_passes: int = 1,
    keep_views: bool = False,
    unlabelled: bool = False,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | None = None,
    precision: str = "fp32",
    overwrite: bool = False,
    shard: Shard = Shard(),
    verify: bool = True,
    join: bool = True,
    exclude: Path | None = None,
) -> EmbedResult:
    """Embed images into an HDF5 feature file, streaming in batches; resumes an interrupted run.

    With a ``shard`` of several, embeds that shard's contiguous share into a part file beside ``output``
    and, when it is the last to finish, joins every part into ``output`` (see ``_embed_shard``);
    ``join=False`` leaves the join to the caller (an executor that joins once, after every shard).
    ``verify=False`` skips the sha256 check of a support folder's images (sizes are checked anyway).
    ``augment_passes`` > 1: each image is the mean of that many augmented views seeded from ``seed``;
    ``keep_views`` keeps the views' own unit rows beside it (``views`` (N, K, D), which GDA fits on).
    ``exclude``: a file of image keys left out (recorded in the options).
    """
    _check_runtime(device, precision)
    check_loader_options(workers, augment_passes, keep_views)
    # A split or table names its images: its --image-root is where they lie, not an input as a whole, so an
    # output beside them (eval's work dir in a dataset's own folder) destroys nothing.
    output_paths.check_paths([input_path, classes_path], [("-o/--output", output)])
    given, class_inputs = _read_class_list(classes_path)
    if given is None and class_names is not None:
        given = class_names
    image_set = imagesets.resolve(
        input_path,
        classes=given,
        split=split,
        image_root=image_root,
        shots=shots,
        seed=seed,
        unlabelled=unlabelled,
        verify=verify,
    )
    if exclude is not None:
        image_set = imagesets.without_keys(image_set, common.read_key_list(exclude, "--exclude"), "--exclude")
    what = str(input_path)
    run = functools.partial(
        embed_image_set,
        image_set,
        model=model,
        pretrained=pretrained,
        classes=_reconcile_classes(image_set.classes, given, what) or [],
        class_inputs=class_inputs,
        what=what,
        device=device,
        precision=precision,
        batch_size=batch_size,
        workers=workers,
        overwrite=overwrite,
        augment_passes=augment_passes,
        augment_seed=seed,
        keep_views=keep_views,
    )
    if shard.count > 1:
        prov = image_set_provenance(
            image_set, model, pretrained, precision, what, class_inputs, augment_passes, seed, keep_views
        )
        return _embed_shard(run, output, shard, prov, overwrite, join)
    with output_lock(output):  # one writer: a second run of the same output is refused with our PID
        done = run(output)
    return EmbedResult([output], summary=_image_summary(output), skipped=done is None)


def _image_summary(path: Path) -> dict[str, Any]:
    """The `embed` summary of a complete image feature file, read from its header: the same keys whether
    it was just written or found up to date."""
    header = hdf5.read_feature_header(path)
    return {
        "rows": header.rows,
        "skipped": header.skipped,
        "model": ModelIdentity.from_dict(header.model).describe(),
        "layout": header.provenance.get("options", {}).get("input_layout"),
    }


def _text_summary(tc: hdf5.TextClassifier) -> dict[str, Any]:
    """The `embed` summary of a text classifier, the same keys whether it was just written or read back."""
    return {"classes": len(tc.classes), "texts": int(tc.num_texts.sum()), "pool": tc.pool}


def _embed_shard(
    run, output: Path, shard: Shard, prov: dict[str, Any], overwrite: bool, join: bool
) -> EmbedResult:
    """Embed this shard's part (skipped when finished, resumed when killed); join when every part is done.

    ``run(path, shard=..., label=...)`` embeds into ``path``; ``prov`` is the single-process provenance,
    to skip a shard whose joined output is already up to date (and refuse one of other options).
    """
    from susx_cli.stages import merge

    if common.decide_existing(
        output, hdf5.existing_provenance(output, common.IMAGE_FEATURES), prov, overwrite
    ):
        info(f"{output} is up to date (same inputs and options); nothing to do")
        return EmbedResult([output], skipped=True)
    merge.check_part_count(output, shard.count)
    part = feature_parts.part_path(output, shard.index, shard.count)
    with output_lock(part):
        done = run(part, shard=shard, label=f"embed images (shard {shard.index + 1}/{shard.count})")
    summary: dict[str, Any] = {"shard": shard.index, "num_shards": shard.count}
    if done is not None:
        summary |= {"rows": done.rows, "skipped": done.skipped, "model": done.model.describe()}
    if not join or not merge.parts_ready(output, shard.count):
        info(f"shard {shard.index + 1}/{shard.count} done; {output} is joined when every shard has finished")
        return EmbedResult([part], summary=summary, skipped=done is None)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(output_lock(output))
        except SusxError:  # another shard finished at the same moment and is joining
            info(f"another shard is joining the parts into {output}")
            return EmbedResult([part], summary=summary, skipped=done is None)
        if not merge.parts_ready(output, shard.count):  # joined (and the parts removed) meanwhile
            return EmbedResult([output], summary=summary, skipped=done is None)
        joined = merge.join_parts_locked(output, shard.count, replace=overwrite)
    info(f"joined {shard.count} parts into {output}")
    return EmbedResult([output], summary={**summary, "joined": joined.summary})


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
) -> EmbedResult:
    """Embed a prompts file's pool into the text classifier HDF5 (weights C x D, texts per class)."""
    import numpy as np

    _check_runtime(device, precision)
    output_paths.check_paths([prompts_path], [("-o/--output", output)])
    prompts = read_prompts(prompts_path)
    pool = pool or prompts.default_pool
    texts = prompts.pool_texts(pool)
    options = {"pool": pool, **_model_options(model, pretrained, precision)}
    prov = common.provenance(options, [common.identity(prompts_path, common.PROMPTS)])
    if common.decide_existing(
        output, hdf5.existing_provenance(output, common.TEXT_CLASSIFIER), prov, overwrite
    ):
        info(f"{output} is up to date (same inputs and options); nothing to do")
        return EmbedResult([output], summary=_text_summary(hdf5.read_text_classifier(output)), skipped=True)
    encoder = load_encoder(model, pretrained, device=device, precision=precision)
    weights = class_text_weights(encoder, texts, batch_size)
    tc = hdf5.TextClassifier(
        weights=weights,
        num_texts=np.array([len(t) for t in texts]),
        classes=prompts.classes,
        model=encoder.identity,
        pool=pool,
        provenance=prov,
    )
    hdf5.write_text_classifier(output, tc)
    return EmbedResult([output], summary=_text_summary(tc))


def is_prompts_file(input_path: Path) -> bool:
    """Whether ``embed`` reads ``input_path`` as prompts.json (the text classifier) rather than images."""
    if not (input_path.is_file() and input_path.suffix.lower() == ".json"):
        return False
    data = common.read_json(input_path)
    return isinstance(data, dict) and data.get("kind") == common.PROMPTS


def embed(options: EmbedOptions, *, quiet: bool = False) -> EmbedResult:
    """Dispatch on the input: prompts.json -> text classifier; anything else -> image features, in this
    process, as this process's shard, or as Ray tasks (``quiet``: what those tasks report)."""
    from susx_cli.sharding import resolve_shard
    from susx_cli.stages import on_ray

    images = {name: getattr(options, name) for name in _IMAGE_OPTIONS}
    images["classes_path"] = images.pop("classes")
    if options.on_ray:
        return on_ray.embed_on_ray(
            options.input,
            options.output,
            num_shards=options.num_shards,
            address=options.ray_address,
            quiet=quiet,
            **images,
        )
    shard = resolve_shard(options.num_shards, options.shard_index)
    if not is_prompts_file(options.input):
        return embed_images(options.input, options.output, shard=shard, **images)
    if shard.source == "options":
        raise SusxError(
            f"{options.input} is a prompts file: the text classifier is not sharded",
            hint="drop --num-shards/--shard-index (one process embeds the texts)",
        )
    _refuse_image_options(options)
    return embed_texts(
        options.input,
        options.output,
        model=options.model,
        pretrained=options.pretrained,
        pool=options.pool,
        batch_size=options.batch_size,
        device=options.device,
        precision=options.precision,
        overwrite=options.overwrite,
    )


_IMAGE_OPTIONS = (
    *EmbedOptions.IMAGE_ONLY,
    *("model", "pretrained", "batch_size", "device", "precision", "overwrite", "verify"),
)


def _refuse_image_options(options: EmbedOptions) -> None:
    """Options only images read, set away from their defaults with a prompts file, are an error."""
    fields = {f.name: (f.default, cli) for f, cli in cli_fields(EmbedOptions)}
    used = [fields[name][1].flag for name in options.IMAGE_ONLY if getattr(options, name) != fields[name][0]]
    if used:
        raise SusxError(
            f"{', '.join(used)} apply to images, but {options.input} is a prompts file",
            hint="drop those options to embed the text classifier",
        )
