"""susx embed: images -> HDF5 features, or prompts.json -> HDF5 text classifier."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from susx_cli.artifacts.prompts import POOLS
from susx_cli.commands._common import (
    BatchSizeOpt,
    DeviceOpt,
    ExecutorOpt,
    JsonOpt,
    ModelOpt,
    NumShardsOpt,
    OutputOpt,
    OverwriteOpt,
    PrecisionOpt,
    PretrainedOpt,
    QuietOpt,
    RayAddressOpt,
    ShardIndexOpt,
    WorkersOpt,
    choice,
    input_argument,
    input_option,
    run,
)


def embed(
    input_path: Annotated[
        Path,
        input_argument(
            help="prompts.json, a support folder, class folders (names or ImageNet WordNet ids), a path,label CSV/TSV, an unlabelled folder, or a CoOp split JSON."
        ),
    ],
    output: OutputOpt,
    model: ModelOpt = "ViT-B-32",
    pretrained: PretrainedOpt = None,
    classes: Annotated[
        Path | None,
        input_option(
            "--classes",
            "-c",
            help="Class list (prompts.json) for class folders and path,label tables; WordNet-id folders default to ImageNet's.",
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Split of a CoOp split file: train | val | test.")
    ] = None,
    image_root: Annotated[
        Path | None,
        input_option(
            "--image-root",
            help="Folder the split's or table's paths are relative to (default: the file's folder).",
        ),
    ] = None,
    shots: Annotated[int | None, typer.Option("--shots", help="Few-shot: K random images per class.")] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for --shots sampling and --augment-passes views.")
    ] = 0,
    augment_passes: Annotated[
        int,
        typer.Option(
            "--augment-passes",
            help="Views per image (random resized crop and flip), raw embeddings averaged; 1: plain.",
        ),
    ] = 1,
    keep_views: Annotated[
        bool,
        typer.Option(
            "--keep-views",
            help="Also keep each augmented view's unit row (dataset views, N x K x D; GDA fits on them).",
        ),
    ] = False,
    unlabelled: Annotated[
        bool, typer.Option("--unlabelled", help="Treat the folder as images without labels.")
    ] = False,
    pool: Annotated[
        choice(POOLS) | None,
        typer.Option("--pool", help="Text pool for prompts.json (default: the prompts')."),
    ] = None,
    batch_size: BatchSizeOpt = 64,
    workers: WorkersOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    overwrite: OverwriteOpt = False,
    num_shards: NumShardsOpt = None,
    shard_index: ShardIndexOpt = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Check each support image's sha256 against its manifest (sizes are always checked).",
        ),
    ] = True,
    exclude: Annotated[
        Path | None,
        input_option(
            "--exclude",
            help="File of image keys to leave out, one a line (e.g. from `susx inspect --influence`).",
        ),
    ] = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Embed images or texts with an open_clip model into an HDF5 artifact.

    Sharded (--num-shards/--shard-index, or a SLURM array / torchrun's variables): each shard embeds a
    contiguous share into OUT.parts/, and the last one to finish joins them into OUT. With --executor ray,
    every shard runs as a Ray task (one GPU each where the cluster has GPUs) and this process joins them.

    Examples:

      susx embed prompts.json -m ViT-B-32:openai -o text.h5

      susx embed support/ -m ViT-B-32:openai -o support.h5

      susx embed shots/ -c prompts.json -m RN50 -o support.h5 --augment-passes 10 --keep-views

      susx embed /data/imagenet/val -c prompts.json -m RN50 -p openai -o query.h5
    """

    def stage():
        from susx_cli.model_spec import resolve_model
        from susx_cli.sharding import resolve_shard
        from susx_cli.stages import on_ray
        from susx_cli.stages.embed import embed as embed_stage

        arch, weights = resolve_model(model, pretrained, default="openai")
        if on_ray.check_executor(executor, ray_address, shard_index):
            run_stage = functools.partial(
                on_ray.embed_on_ray, num_shards=num_shards, address=ray_address, quiet=quiet
            )
        else:
            run_stage = functools.partial(embed_stage, shard=resolve_shard(num_shards, shard_index))
        return run_stage(
            input_path,
            output,
            model=arch,
            pretrained=weights,
            classes_path=classes,
            split=split,
            image_root=image_root,
            shots=shots,
            seed=seed,
            augment_passes=augment_passes,
            keep_views=keep_views,
            unlabelled=unlabelled,
            pool=pool,
            batch_size=batch_size,
            workers=workers,
            device=device,
            precision=precision,
            overwrite=overwrite,
            verify=verify,
            exclude=exclude,
        )

    run(stage, quiet=quiet, as_json=as_json)
