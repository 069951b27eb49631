"""`curate`: build a support set (image folder + manifest) from prompts.json with a chosen source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from susx_cli.artifacts import common, support
from susx_cli.artifacts.lock import output_lock
from susx_cli.artifacts.prompts import read_prompts
from susx_cli.errors import SusxError
from susx_cli.progress import info, warn
from susx_cli.sharding import Shard
from susx_cli.sources.base import Source
from susx_cli.stages.options import CurateOptions
from susx_cli.stages.results import CurateResult


def curate(options: CurateOptions, *, quiet: bool = False) -> CurateResult:
    """`susx curate`: the support set ``options`` ask for, in this process, as this process's shard, or
    with `--executor ray` (source sd) as Ray tasks (``quiet``: what those tasks report)."""
    from susx_cli.sharding import resolve_shard
    from susx_cli.sources.registry import make_source
    from susx_cli.stages import on_ray

    if options.executor == "ray":
        return on_ray.curate_on_ray(
            options.prompts,
            options.output,
            options.source,
            options.source_options,
            num_shards=options.num_shards,
            address=options.ray_address,
            min_per_class=options.min_per_class,
            overwrite=options.overwrite,
            quiet=quiet,
            exclude=options.exclude,
        )
    return curate_source(
        options.prompts,
        options.output,
        make_source(options.source, options.source_options),
        shard=resolve_shard(options.num_shards, options.shard_index),
        min_per_class=options.min_per_class,
        overwrite=options.overwrite,
        exclude=options.exclude,
    )


def curate_source(
    prompts_path: Path,
    output: Path,
    source: Source,
    *,
    shard: Shard = Shard(),
    min_per_class: int = 1,
    overwrite: bool = False,
    join: bool = True,
    exclude: Path | None = None,
) -> CurateResult:
    """Run ``source`` for this shard's work units; merge when all shards are done. ``exclude``: a file of
    support-set keys (class folder/image, as `susx inspect --influence` lists them) left out of the set.

    Idempotent: a complete support set from the same inputs and options is left as it is. ``join=False``
    leaves the merge to the caller (``join_shards``, once every shard ended); the result's output is then
    the folder this shard wrote into (the output, or its staging folder under --overwrite).
    """
    prompts = read_prompts(prompts_path)
    options = {"source": source.name, **source.options()}
    excluded = image_paths(common.read_key_list(exclude, "--exclude")) if exclude is not None else []
    if excluded:
        options["exclude"] = excluded  # another list is another set of options
    inputs = [common.identity(prompts_path, common.PROMPTS), *source.inputs()]
    refuse_output_among_inputs(output, inputs)
    prov = common.provenance(options, inputs)
    with output_lock(output.with_name(f"{output.name}.shard-{shard.index:05d}-of-{shard.count:05d}")):
        support.recover_interrupted_swap(output)
        replacing = overwrite and output.is_dir() and any(output.iterdir())
        if replacing:
            support.check_replaceable(output)
        elif common.decide_existing(output, support.existing_provenance(output), prov, overwrite):
            info(f"{output} is up to date (same inputs and options); nothing to do")
            summary = complete_summary(output, shard.index, source.per_class)
            return CurateResult([output], skipped=True, summary=summary)
        # --overwrite builds the new set beside the old one and swaps it in only once it is complete.
        target = support.staging_dir(output) if replacing else output
        refuse_other_shard_count(target, shard, prov)
        units = without_units(source.units(prompts), prompts.classes, excluded)
        return _curate_into(
            target, output, units, prompts, prov, source, shard, min_per_class, replacing, join
        )


def image_paths(keys: list[str]) -> list[str]:
    """Support-set keys without their file extension (class folder/image), sorted, each once."""
    return sorted({k.rsplit(".", 1)[0] if "." in k.rpartition("/")[2] else k for k in keys})


def without_units(units: list, classes: list[str], paths: list[str]) -> list:
    """The work units less those whose image would be at one of ``paths`` (``image_paths``); a path that
    names no unit is refused, so that a typo never excludes nothing."""
    if not paths:
        return units
    wanted = set(paths)
    path = {id(u): f"{support.class_dir_name(u.class_index, classes[u.class_index])}/{u.key}" for u in units}
    unknown = sorted(wanted - set(path.values()))
    if unknown:
        raise SusxError(
            f"--exclude: {len(unknown)} key(s) name no image this curate makes, e.g. {unknown[0]!r}",
            hint="use the support set's keys (class folder/image), as `susx inspect --influence` lists them",
        )
    return [u for u in units if path[id(u)] not in wanted]


def refuse_other_shard_count(root: Path, shard: Shard, prov: dict) -> None:
    """The same run resumed with another shard count: a resubmitted SLURM array task sees a count of 1
    (``sbatch --array=3``), and would otherwise redo every image as a run of one shard. (A run with other
    options is refused, or restarted, by the support writer.)"""
    recorded = support.recorded_shard_counts(root) - {shard.count}
    classes_file = root / support.CLASSES_FILE
    same_run = classes_file.is_file() and common.same_fingerprint(common.read_json(classes_file), prov)
    if recorded and same_run:
        counts = ", ".join(str(c) for c in sorted(recorded))
        raise SusxError(
            f"{root} holds parts of a run of {counts} shards, and this run is shard {shard.index} of {shard.count} "
            f"({shard.source})",
            hint=f"rerun the missing shard with --num-shards {counts} --shard-index I, or `susx merge` once all are done",
        )


def refuse_output_among_inputs(output: Path, inputs: list[dict]) -> None:
    """An output that is, contains or lies inside one of the run's inputs would destroy that input.

    A table's or split's images are the files it names, not its folder: an output beside the table (in
    the working folder it lives in) is fine; one that is or holds that folder is not."""
    out = output.resolve()
    for item in inputs:
        if not item.get("path"):
            continue
        source = Path(item["path"]).resolve()
        inside = source in out.parents and item.get("kind") not in common.NAMED_LISTINGS
        if out == source or out in source.parents or inside:
            raise SusxError(
                f"the output {output} overlaps the input {item['path']}",
                hint="write the support set to a separate -o/--output folder",
            )


def _curate_into(
    target, output, units, prompts, prov, source, shard, min_per_class, replacing, join=True
) -> CurateResult:
    # The unit list first: a source that refuses its input (e.g. no CuPL sentences) leaves no folder behind.
    units = shard.select(units)
    writer = support.SupportWriter(
        target, prompts.classes, prov, shard_index=shard.index, num_shards=shard.count, overwrite=replacing
    )
    try:
        todo = [u for u in units if not writer.is_done(u.class_index, u.key)]
        if len(todo) < len(units):
            info(f"resuming: {len(units) - len(todo)} of {len(units)} images of this shard are already done")
        summary = source.run(todo, writer) if todo else {}
        if shard.count == 1:
            # Before the marker: a set missing whole classes must not look complete (a rerun resumes).
            check_min_per_class(writer, min_per_class)
    finally:
        writer.close()
    merged = writer.finish({"source": source.name, **summary} if shard.count == 1 else summary, merge=join)
    result = CurateResult([output], summary={"shard": shard.index, "num_shards": shard.count, **summary})
    if not merged:
        info(f"shard {shard.index + 1}/{shard.count} done; the set completes when every shard has finished")
        result.summary["complete"] = False
        if not join:
            result.outputs = [target]
        return result
    return _completed(target, output, source.per_class, result)


def join_shards(target: Path, output: Path, num_shards: int, per_class: int | None) -> CurateResult:
    """Merge the parts that ``num_shards`` shards run with ``join=False`` wrote into ``target``, then put
    the set in place at ``output``: what the last shard of a sharded run does, done once by an executor."""
    with output_lock(output):
        if not support.merge_parts(target, num_shards):
            raise SusxError(
                f"{output}: not every one of the {num_shards} shards has finished",
                hint="re-run the same command: finished shards are skipped",
            )
        result = CurateResult([output], summary={"num_shards": num_shards})
        return _completed(target, output, per_class, result)


def _completed(target: Path, output: Path, wanted: int | None, result: CurateResult) -> CurateResult:
    """Swap a merged set built beside ``output`` into place; report its counts, short classes, duplicates."""
    if target != output:
        support.swap_into_place(target, output)
    final = support.read_support(output)
    result.summary.update(complete_summary(output, result.summary.get("shard", 0), wanted, final))
    short = result.summary["short_classes"]
    for name, count in list(short.items())[:20]:
        warn(f"class {name!r} has {count} of {wanted} images")
    if len(short) > 20:
        warn(f"... and {len(short) - 20} more classes with fewer than {wanted} images")
    shared = cross_class_duplicates(final.rows)
    for digest, names in list(shared.items())[:10]:
        warn(
            f"one image (sha256 {digest[:12]}) is in {len(names)} classes: {', '.join(repr(n) for n in names)}"
        )
    if len(shared) > 10:
        warn(f"... and {len(shared) - 10} more images that are in more than one class")
    return result


def complete_summary(
    output: Path, shard_index: int, wanted: int | None, final: support.SupportSet | None = None
) -> dict[str, Any]:
    """The summary of a complete support set, read from the folder (its marker keeps each shard's own
    summary): the same keys whether this run made the set or found it up to date."""
    final = final or support.read_support(output)
    shards = final.summary.get("shards") or [{}]
    own = {k: v for k, v in shards[min(shard_index, len(shards) - 1)].items() if k != "rows"}
    counts = final.counts()
    return {
        "shard": shard_index,
        "num_shards": int(final.summary.get("num_shards", len(shards))),
        **own,
        "complete": True,
        "images": len(final.rows),
        "per_class": counts,
        "short_classes": {final.classes[i]: c for i, c in enumerate(counts) if wanted and c < wanted},
        "cross_class_duplicates": len(cross_class_duplicates(final.rows)),
    }


def check_min_per_class(writer: support.SupportWriter, min_per_class: int) -> None:
    """Refuse to finish a support set where some class has fewer than ``min_per_class`` images."""
    if min_per_class < 0:
        raise SusxError(
            f"--min-per-class must be at least 0, got {min_per_class}", hint="e.g. --min-per-class 1"
        )
    counts = [0] * len(writer.classes)
    for class_index, _ in writer.done:
        counts[class_index] += 1
    short = [(writer.classes[i], c) for i, c in enumerate(counts) if c < min_per_class]
    if short:
        shown = ", ".join(f"{name!r} ({count})" for name, count in short[:5]) + (
            " ..." if len(short) > 5 else ""
        )
        what = "no image" if min_per_class == 1 else f"fewer than {min_per_class} images"
        raise SusxError(
            f"{len(short)} class(es) have {what}: {shown}; the support set is left unfinished",
            hint="check the source's warnings above and re-run, or lower --min-per-class (0 accepts empty classes)",
        )


def cross_class_duplicates(rows: list[dict]) -> dict[str, list[str]]:
    """Images (by sha256) that landed in more than one class: sha256 -> class names, in class order."""
    classes: dict[str, dict[int, str]] = {}
    for row in rows:
        classes.setdefault(row["sha256"], {})[int(row["class_index"])] = row["class_name"]
    return {d: [c[i] for i in sorted(c)] for d, c in classes.items() if len(c) > 1}
