"""susx merge: finish a sharded run once every shard has finished.

A support folder (`curate`) gets its part manifests joined; a feature file target (`embed -o OUT.h5`)
gets its parts in OUT.h5.parts/ joined into OUT.h5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from susx_cli.commands._common import INPUT_OUTPUT, JsonOpt, QuietOpt, path_argument, run


def merge(
    target: Annotated[
        Path,
        path_argument(
            INPUT_OUTPUT,
            help="The support folder the curate shards wrote into, or the -o OUT.h5 of the embed shards.",
        ),
    ],
    num_shards: Annotated[int, typer.Option("--num-shards", help="How many shards the run had.")],
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Merge shard parts: a support folder's manifests, or an embed run's feature parts into OUT.h5.

    Examples:

      susx merge support/ --num-shards 4

      susx merge support.h5 --num-shards 8
    """

    def stage():
        from susx_cli.stages.merge import merge_features, merge_support, parts_dir

        if not target.is_dir() and (target.suffix.lower() in (".h5", ".hdf5") or parts_dir(target).is_dir()):
            return merge_features(target, num_shards)
        return merge_support(target, num_shards)

    run(stage, quiet=quiet, as_json=as_json)
