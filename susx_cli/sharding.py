"""Which shard this process is: explicit options, else SLURM array or torchrun environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from susx_cli.errors import SusxError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1
    source: str = "single"

    def select(self, units: Sequence[T]) -> list[T]:
        """This shard's share of a deterministic unit list (round robin, so shards stay balanced)."""
        return list(units[self.index :: self.count])


def resolve_shard(
    num_shards: int | None, shard_index: int | None, env: Mapping[str, str] | None = None
) -> Shard:
    """The shard position from the options, or from SLURM / torchrun variables when both are absent."""
    env = os.environ if env is None else env
    if num_shards is not None or shard_index is not None:
        if num_shards is None or shard_index is None:
            raise SusxError("--num-shards and --shard-index go together", hint="give both, or neither")
        shard = Shard(shard_index, num_shards, "options")
    elif "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        offset = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        shard = Shard(
            int(env["SLURM_ARRAY_TASK_ID"]) - offset, int(env["SLURM_ARRAY_TASK_COUNT"]), "slurm-array"
        )
    elif "WORLD_SIZE" in env and "RANK" in env:
        shard = Shard(int(env["RANK"]), int(env["WORLD_SIZE"]), "torchrun")
    else:
        shard = Shard()
    if shard.count < 1 or not 0 <= shard.index < shard.count:
        raise SusxError(
            f"shard index {shard.index} is not in 0..{shard.count - 1} (from {shard.source})",
            hint="--shard-index must be at least 0 and less than --num-shards",
        )
    return shard
