"""susx embed: images -> HDF5 features, or prompts.json -> HDF5 text classifier."""

from __future__ import annotations

from typing import Any

from susx_cli.commands._common import build_options, options_command, run
from susx_cli.stages.options import EmbedOptions


@options_command(EmbedOptions)
def embed(**values: Any) -> None:
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
        from susx_cli.stages.embed import embed as embed_stage

        return embed_stage(build_options(EmbedOptions, values), quiet=values["quiet"])

    run(stage, quiet=values["quiet"], as_json=values["as_json"])
