"""`merge`: finish a sharded support set."""

from __future__ import annotations

from pathlib import Path

from susx_cli.artifacts import support
from susx_cli.errors import SusxError
from susx_cli.stages.results import StageResult


def merge_support(root: Path, num_shards: int) -> StageResult:
    if not support.is_support_dir(root):
        raise SusxError(f"{root} is not a susx support folder", hint="pass the -o folder of `susx curate`")
    parts = [root / support.PARTS / support.part_name(i, num_shards) for i in range(num_shards)]
    missing = [i for i, p in enumerate(parts) if not p.with_name(p.name + ".done").exists()]
    if missing:
        raise SusxError(
            f"{root}: shard(s) {missing[:10]} of {num_shards} have not finished",
            hint="run the missing shards (same command with --shard-index), then merge again",
        )
    support.merge_parts(root, num_shards)
    final = support.read_support(root)
    return StageResult("merge", [root], summary={"images": len(final.rows), "per_class": final.counts()})
