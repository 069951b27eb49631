"""susx merge: join the part manifests of a sharded curate run once every shard has finished."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from susx_cli.commands._common import JsonOpt, QuietOpt, run


def merge(
    support_dir: Annotated[Path, typer.Argument(help="The support folder the shards wrote into.")],
    num_shards: Annotated[int, typer.Option("--num-shards", help="How many shards the run had.")],
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Merge shard manifests into manifest.jsonl and write the completion marker."""

    def stage():
        from susx_cli.stages.merge import merge_support

        return merge_support(support_dir, num_shards)

    run(stage, quiet=quiet, as_json=as_json)
