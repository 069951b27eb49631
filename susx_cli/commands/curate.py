"""susx curate: build a support set (image folder + manifest) from prompts.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from susx_cli.commands._common import (
    JsonOpt,
    NumShardsOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    ShardIndexOpt,
    run,
)

SOURCES = ("folder", "sd", "laion", "pool")


def curate(
    prompts_path: Annotated[Path, typer.Argument(help="prompts.json (its class list orders the support set).")],
    output: OutputOpt,
    source: Annotated[str, typer.Option("--source", "-s", help="folder | sd | laion | pool")] = "folder",
    per_class: Annotated[int | None, typer.Option("--per-class", "-k", help="Images per class (sd, laion, pool).")] = None,
    # --- folder: existing images, e.g. k real labelled shots per class
    images: Annotated[Path | None, typer.Option("--images", help="folder: class folders or a CoOp split JSON.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="folder: split of a split file (train | val | test).")] = None,
    image_root: Annotated[Path | None, typer.Option("--image-root", help="folder: root of the split's relative paths.")] = None,
    shots: Annotated[int | None, typer.Option("--shots", help="folder: K random images per class.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Run seed: shot sampling, generation and prompt sampling.")] = 0,
    link: Annotated[bool, typer.Option("--link", help="folder: symlink the images instead of copying them.")] = False,
    num_shards: NumShardsOpt = None,
    shard_index: ShardIndexOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a support set with one sub-folder per class index and a manifest."""

    def stage():
        from susx_cli.errors import SusxError
        from susx_cli.sharding import resolve_shard
        from susx_cli.stages.curate import curate as curate_stage

        if source not in SOURCES:
            raise SusxError(f"unknown source {source!r}", hint=f"use one of {', '.join(SOURCES)}")
        if per_class is not None and per_class < 1:
            raise SusxError(f"--per-class must be at least 1, got {per_class}", hint="e.g. --per-class 16")
        if source == "folder":
            from susx_cli.sources.folder import FolderSource

            if images is None:
                raise SusxError("--source folder needs --images DIR_OR_SPLIT", hint="point it at class folders or a split JSON")
            src = FolderSource(images, split=split, image_root=image_root, shots=shots, seed=seed, link=link)
        else:
            raise SusxError(f"source {source!r} is not available in this version", hint="use --source folder")
        return curate_stage(prompts_path, output, src, shard=resolve_shard(num_shards, shard_index), overwrite=overwrite)

    run(stage, quiet=quiet, as_json=as_json)
