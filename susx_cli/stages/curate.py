"""`curate`: build a support set (image folder + manifest) from prompts.json with a chosen source."""

from __future__ import annotations

from pathlib import Path

from susx_cli.artifacts import common, support
from susx_cli.artifacts.prompts import read_prompts
from susx_cli.progress import info, warn
from susx_cli.sharding import Shard
from susx_cli.sources.base import Source
from susx_cli.stages.results import StageResult


def curate(
    prompts_path: Path,
    output: Path,
    source: Source,
    *,
    shard: Shard = Shard(),
    overwrite: bool = False,
) -> StageResult:
    """Run ``source`` for this shard's work units; merge when all shards are done.

    Idempotent: a complete support set from the same inputs and options is left as it is.
    """
    prompts = read_prompts(prompts_path)
    options = {"source": source.name, **source.options()}
    prov = common.provenance(
        options, [common.identity(prompts_path, common.PROMPTS), *source.inputs()]
    )
    if common.decide_existing(output, support.existing_provenance(output), prov, overwrite):
        info(f"{output} is up to date (same inputs and options); nothing to do")
        return StageResult("curate", [output], skipped=True)

    # The unit list first: a source that refuses its input (e.g. no CuPL sentences) leaves no folder behind.
    units = shard.select(source.units(prompts))
    writer = support.SupportWriter(
        output, prompts.classes, prov, shard_index=shard.index, num_shards=shard.count, overwrite=overwrite
    )
    try:
        todo = [u for u in units if not writer.is_done(u.class_index, u.key)]
        if len(todo) < len(units):
            info(f"resuming: {len(units) - len(todo)} of {len(units)} images of this shard are already done")
        summary = source.run(todo, writer) if todo else {}
    finally:
        writer.close()
    merged = writer.finish({"source": source.name, **summary} if shard.count == 1 else summary)
    result = StageResult("curate", [output], summary={"shard": shard.index, "num_shards": shard.count, **summary})
    if not merged:
        info(f"shard {shard.index + 1}/{shard.count} done; the set completes when every shard has finished")
        result.summary["complete"] = False
        return result
    final = support.read_support(output)
    counts = final.counts()
    result.summary.update({"complete": True, "images": len(final.rows), "per_class": counts})
    wanted = source.per_class
    if wanted:
        short = [(final.classes[i], c) for i, c in enumerate(counts) if c < wanted]
        for name, count in short[:20]:
            warn(f"class {name!r} has {count} of {wanted} images")
        if len(short) > 20:
            warn(f"... and {len(short) - 20} more classes with fewer than {wanted} images")
        result.summary["short_classes"] = {name: count for name, count in short}
    shared = cross_class_duplicates(final.rows)
    if shared:
        for digest, names in list(shared.items())[:10]:
            warn(f"one image (sha256 {digest[:12]}) is in {len(names)} classes: {', '.join(repr(n) for n in names)}")
        if len(shared) > 10:
            warn(f"... and {len(shared) - 10} more images that are in more than one class")
        result.summary["cross_class_duplicates"] = len(shared)
    return result


def cross_class_duplicates(rows: list[dict]) -> dict[str, list[str]]:
    """Images (by sha256) that landed in more than one class: sha256 -> class names, in class order."""
    classes: dict[str, dict[int, str]] = {}
    for row in rows:
        classes.setdefault(row["sha256"], {})[int(row["class_index"])] = row["class_name"]
    return {d: [c[i] for i in sorted(c)] for d, c in classes.items() if len(c) > 1}
