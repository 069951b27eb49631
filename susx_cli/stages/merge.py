"""`merge`: finish a sharded run: a support set (`curate`) or a feature file (`embed`)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common, hdf5, support
from susx_cli.artifacts.feature_parts import part_path, parts_dir, recorded_part_counts
from susx_cli.artifacts.lock import output_lock
from susx_cli.errors import SusxError
from susx_cli.progress import info
from susx_cli.stages.options import MergeOptions
from susx_cli.stages.results import MergeResult


def merge(options: MergeOptions) -> MergeResult:
    """A feature file target (OUT.h5, or one whose OUT.parts/ exists) gets its parts joined; a support
    folder its part manifests."""
    target = options.target
    if not target.is_dir() and (target.suffix.lower() in (".h5", ".hdf5") or parts_dir(target).is_dir()):
        return merge_features(target, options.num_shards)
    return merge_support(target, options.num_shards)


def merge_support(root: Path, num_shards: int) -> MergeResult:
    if not support.is_support_dir(root):
        raise SusxError(f"{root} is not a susx support folder", hint="pass the -o folder of `susx curate`")
    recorded = support.recorded_shard_counts(root)
    if not recorded:
        raise SusxError(f"{root} holds no shard parts to merge", hint="run the shards of `susx curate` first")
    if recorded != {num_shards}:
        counts = ", ".join(str(c) for c in sorted(recorded))
        raise SusxError(
            f"{root}: the parts were written by runs of {counts} shards, not --num-shards {num_shards}",
            hint=f"merge with --num-shards {counts}"
            if len(recorded) == 1
            else "re-run curate with one shard count",
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
    return MergeResult([root], summary={"images": len(final.rows), "per_class": final.counts()})


# ------------------------------------------------------------------------------------ sharded features


def check_part_count(output: Path, num_shards: int) -> None:
    """Refuse a run or merge whose shard count disagrees with the parts already beside ``output``."""
    recorded = recorded_part_counts(output)
    if recorded and recorded != {num_shards}:
        counts = ", ".join(str(c) for c in sorted(recorded))
        raise SusxError(
            f"{parts_dir(output)} holds parts of a run of {counts} shards, not {num_shards}",
            hint=f"use {counts} shards, or delete {parts_dir(output)} to start again",
        )


def unsharded(prov: dict[str, Any]) -> dict[str, Any]:
    """A part's provenance as the single-process run records it: the shard options dropped."""
    from susx_cli.embedding import SHARD_OPTION_KEYS

    options = {k: v for k, v in (prov.get("options") or {}).items() if k not in SHARD_OPTION_KEYS}
    return {**prov, "options": options}


def parts_ready(output: Path, num_shards: int) -> bool:
    return all(part_path(output, i, num_shards).exists() for i in range(num_shards))


def merge_features(output: Path, num_shards: int) -> MergeResult:
    """`susx merge OUT.h5 --num-shards N`: join the finished parts of a sharded `embed` into OUT.h5."""
    with output_lock(output):
        return join_parts_locked(output, num_shards, replace=False)


def join_parts_locked(output: Path, num_shards: int, *, replace: bool) -> MergeResult:
    """Validate the parts of ``output`` and join them; the caller holds ``output_lock(output)``.

    Nothing is merged on any refusal, and the parts are removed only once OUT.h5 is complete in place.
    """
    folder = parts_dir(output)
    if not recorded_part_counts(output):
        joined = hdf5.existing_provenance(output, common.IMAGE_FEATURES) if output.exists() else None
        if joined is not None and common.REPLACEABLE not in joined:
            info(f"{output} is already joined; nothing to do")
            header = hdf5.read_feature_header(output)
            summary = {"rows": header.rows, "skipped": header.skipped, "parts": num_shards}
            return MergeResult([output], skipped=True, summary=summary)
        raise SusxError(
            f"{output}: no shard parts to merge in {folder}", hint="run the shards of `susx embed` first"
        )
    check_part_count(output, num_shards)
    parts = [part_path(output, i, num_shards) for i in range(num_shards)]
    missing = [i for i, p in enumerate(parts) if not p.exists()]
    if missing:
        raise SusxError(
            f"{output}: shard(s) {missing[:10]} of {num_shards} have not finished",
            hint="run the missing shards (same command with --shard-index), then merge again",
        )
    headers = [hdf5.read_feature_header(p) for p in parts]
    prov = _check_parts_agree(parts, headers)
    if sum(h.rows for h in headers) == 0:
        raise SusxError(
            f"no image of the {num_shards} parts of {output} could be read", hint="check the image files"
        )
    existing = hdf5.existing_provenance(output, common.IMAGE_FEATURES) if output.exists() else None
    if not replace and existing is not None and not common.same_fingerprint(existing, prov):
        raise SusxError(
            f"{output} exists and was made from other inputs or options "
            f"({common.fingerprint_changes(existing, prov)})",
            hint="move it away (or re-run the shards with --overwrite), then merge again",
        )
    if replace or existing is None:
        hdf5.join_feature_parts(parts, output, {**prov, "created": common.now_iso()})
    for part in parts:
        part.unlink()
    with contextlib.suppress(OSError):  # leftovers (another count's partials) keep the folder
        folder.rmdir()
    rows, skipped = sum(h.rows for h in headers), sum(h.skipped for h in headers)
    return MergeResult([output], summary={"rows": rows, "skipped": skipped, "parts": num_shards})


def _check_parts_agree(parts: list[Path], headers: list) -> dict[str, Any]:
    """The joined provenance; refuses parts of other models, options or inputs, or with gaps between them."""
    first = unsharded(headers[0].provenance)
    expected_start = 0
    for index, (part, header) in enumerate(zip(parts, headers, strict=True)):
        options = header.provenance.get("options") or {}
        prov = unsharded(header.provenance)
        differs = [
            what
            for what, same in (
                ("model", header.model == headers[0].model),
                ("options", prov.get("options") == first.get("options")),
                ("inputs", common.fingerprint(prov)["inputs"] == common.fingerprint(first)["inputs"]),
                ("classes", header.classes == headers[0].classes),
            )
            if not same
        ]
        if differs:
            raise SusxError(
                f"{part} was made with other {', '.join(differs)} than {parts[0].name}",
                hint="re-run that shard with the same command as the others (--overwrite replaces its part)",
            )
        if options.get("shard_index") != index or options.get("item_start") != expected_start:
            raise SusxError(
                f"{part} does not hold shard {index}'s items", hint="delete it and re-run that shard"
            )
        expected_start = options.get("item_stop")
    if expected_start != first["options"].get("num_items"):
        raise SusxError(f"the parts of {parts[0].parent} do not cover every item", hint="re-run the shards")
    return first
