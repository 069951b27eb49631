"""`merge`: finish a sharded support set."""

from __future__ import annotations

import re
from pathlib import Path

from susx_cli.artifacts import support
from susx_cli.errors import SusxError
from susx_cli.stages.results import StageResult

_PART = re.compile(r"manifest-(\d{5})-of-(\d{5})\.jsonl")


def recorded_shard_counts(root: Path) -> set[int]:
    """The shard counts the part manifests of ``root`` were written with (one, unless runs were mixed)."""
    names = (p.name for p in (root / support.PARTS).glob("manifest-*-of-*.jsonl"))
    return {int(m.group(2)) for m in map(_PART.fullmatch, names) if m}


def merge_support(root: Path, num_shards: int) -> StageResult:
    if not support.is_support_dir(root):
        raise SusxError(f"{root} is not a susx support folder", hint="pass the -o folder of `susx curate`")
    if num_shards < 1:
        raise SusxError(f"--num-shards must be at least 1, got {num_shards}", hint="pass the count the shards ran with")
    recorded = recorded_shard_counts(root)
    if not recorded:
        raise SusxError(f"{root} holds no shard parts to merge", hint="run the shards of `susx curate` first")
    if recorded != {num_shards}:
        counts = ", ".join(str(c) for c in sorted(recorded))
        raise SusxError(
            f"{root}: the parts were written by runs of {counts} shards, not --num-shards {num_shards}",
            hint=f"merge with --num-shards {counts}" if len(recorded) == 1 else "re-run curate with one shard count",
        )
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
