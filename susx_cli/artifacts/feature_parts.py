"""Where the shards of a sharded `embed -o OUT.h5` write their parts, and which shard counts they record::

    OUT.h5.parts/part-<i:05d>-of-<n:05d>.h5[.partial]

`merge` (or the last shard to finish) joins them into OUT.h5 (``hdf5.join_feature_parts``).
"""

from __future__ import annotations

import re
from pathlib import Path

_FEATURE_PART = re.compile(r"part-(\d{5})-of-(\d{5})\.h5(?:\.partial)?")


def parts_dir(output: Path) -> Path:
    """Where the shards of ``susx embed -o OUT.h5`` write their parts: ``OUT.h5.parts/``."""
    return output.with_name(output.name + ".parts")


def part_path(output: Path, index: int, count: int) -> Path:
    return parts_dir(output) / f"part-{index:05d}-of-{count:05d}.h5"


def recorded_part_counts(output: Path) -> set[int]:
    """The shard counts of the feature parts (finished or not) beside ``output``."""
    folder = parts_dir(output)
    names = (p.name for p in folder.iterdir()) if folder.is_dir() else ()
    return {int(m.group(2)) for m in map(_FEATURE_PART.fullmatch, names) if m}
