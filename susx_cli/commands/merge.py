"""susx merge: finish a sharded run once every shard has finished.

A support folder (`curate`) gets its part manifests joined; a feature file target (`embed -o OUT.h5`)
gets its parts in OUT.h5.parts/ joined into OUT.h5.
"""

from __future__ import annotations

from typing import Any

from susx_cli.commands._common import build_options, options_command, run
from susx_cli.stages.options import MergeOptions


@options_command(MergeOptions)
def merge(**values: Any) -> None:
    """Merge shard parts: a support folder's manifests, or an embed run's feature parts into OUT.h5.

    Examples:

      susx merge support/ --num-shards 4

      susx merge support.h5 --num-shards 8
    """

    def stage():
        from susx_cli.stages.merge import merge as merge_stage

        return merge_stage(build_options(MergeOptions, values))

    run(stage, quiet=values["quiet"], as_json=values["as_json"])
