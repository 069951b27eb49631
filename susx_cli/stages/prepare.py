"""`datasets prepare`: a dataset's usual download -> the registry's layout under a data root (a split
file in CoOp rows, images written out where the download has none as files, a marker written last).

Idempotent like every stage: the marker records a fingerprint (dataset, download, split options, and the
size and time of every file read); a complete folder with the same fingerprint is skipped, one with
another is refused without --overwrite, and an unfinished one is resumed by the same command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from susx_cli.artifacts import common, outputs, prepared
from susx_cli.artifacts.lock import output_lock
from susx_cli.datasets import registry
from susx_cli.datasets.prepare import CONVERTERS, Converter, split_file
from susx_cli.datasets.prepare.base import Converted, shown
from susx_cli.errors import SusxError
from susx_cli.progress import info, warn
from susx_cli.stages.results import StageResult

CONVERTER_VERSION = 1  # bump when a converter's output for the same download changes


def prepare_dataset(
    name: str,
    source: Path,
    data_root: Path,
    *,
    published_split: Path | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> StageResult:
    spec = registry.get(name)
    converter = _converter(spec, source, published_split)
    folder = spec.root(data_root)
    # The download may lie in the dataset's own folder (prepared in place), but the prepared folder may not
    # lie inside the download: its link back to the download would loop, and the download would change.
    if folder.resolve() != source.resolve():
        outputs.check_paths([source], [("-o/--output", folder)])
    files = split_file.inputs(published_split, source) if published_split else converter.inputs(source)
    fingerprint = {
        "dataset": spec.id,
        "converter_version": CONVERTER_VERSION,
        "source": common.resolved_path(source),
        "split_file": common.identity(published_split)["sha256"] if published_split else None,
        "seed": None if published_split else seed,
        "inputs": common.listing_identity(source, files, "download")["sha256"],
    }
    split_path = folder / spec.split_file
    marker = prepared.read_marker(folder)
    if (
        marker
        and marker.get("complete")
        and marker.get("fingerprint") == fingerprint
        and split_path.is_file()
    ):
        info(f"{spec.id}: {folder} is prepared from the same download and options: skipped")
        return StageResult("prepare", [split_path], skipped=True, summary=marker.get("summary", {}))
    _refuse_to_replace(folder, split_path, marker, fingerprint, overwrite=overwrite, clear=False)
    converted = (  # reads only: a damaged download is refused before anything is written
        split_file.convert(published_split, source, spec.id, allow_missing=converter.partial_downloads)
        if published_split
        else converter.convert(source, seed)
    )
    with output_lock(prepared.marker_path(folder)):  # one writer; the lock file lies inside the folder
        marker = prepared.read_marker(folder)
        _refuse_to_replace(folder, split_path, marker, fingerprint, overwrite=overwrite, clear=True)
        if marker is None and converted.writes_images and (folder / "images").exists():
            raise SusxError(
                f"{folder / 'images'} exists and was not written by susx datasets prepare",
                hint="move it away, or prepare into another -o",
            )
        summary = _write(folder, split_path, fingerprint, converted, source)
    if len(converted.classes) != spec.num_classes:
        why = " (a partial download?)" if len(converted.classes) < spec.num_classes else ""
        warn(
            f"{spec.id}: {len(converted.classes)} classes here, the registry's {spec.name} has "
            f"{spec.num_classes}{why}"
        )
    if converted.missing:
        warn(
            f"{spec.id}: {len(converted.missing)} image(s) the source lists are not in the download, left out "
            f"and listed in {split_path.name} under prepared.missing: {shown(converted.missing)}"
        )
    return StageResult("prepare", [split_path], summary=summary)


def _converter(spec: registry.DatasetSpec, source: Path, published_split: Path | None) -> Converter:
    """The converter of ``spec``, refusing a dataset read from its usual layout, a --split-file the
    authors did not publish, and a --from that is not a folder."""
    converter = CONVERTERS.get(spec.id)
    if converter is None:
        raise SusxError(
            f"{spec.id} needs no prepare: it is read from its usual layout",
            hint=f"{spec.name} needs {spec.needs()}; `susx datasets check DATA {spec.id}` tells what is missing",
        )
    if published_split is not None and not converter.published_split:
        raise SusxError(
            f"--split-file: the SuS-X authors published no split for {spec.id}",
            hint="leave --split-file out: the official or seeded split is used",
        )
    if not source.is_dir():
        raise SusxError(
            f"--from {source} is not a folder", hint=f"give the folder holding {converter.source}"
        )
    return converter


def _write(
    folder: Path, split_path: Path, fingerprint: dict[str, Any], converted: Converted, source: Path
) -> dict[str, Any]:
    """Marker (incomplete), images, link, split file, marker (complete): in this order, so an
    interrupted run never leaves a folder that looks complete."""
    writes = converted.writes_images
    prepared.write_marker(folder, fingerprint, complete=False, writes_images=writes, summary={})
    written = converted.write_images(folder) if converted.write_images else 0
    prefix = "" if writes else _source_prefix(folder, source)
    splits = {
        split: [[f"{prefix}{path}", label, converted.classes[label]] for path, label in rows]
        for split, rows in converted.rows.items()
    }
    summary = _summary(converted, splits, written)
    prepared.write_split(split_path, splits, _record(converted, source, summary))
    prepared.write_marker(folder, fingerprint, complete=True, writes_images=writes, summary=summary)
    return summary


def _refuse_to_replace(
    folder: Path,
    split_path: Path,
    marker: dict[str, Any] | None,
    fingerprint: dict[str, Any],
    *,
    overwrite: bool,
    clear: bool,
) -> None:
    """Nothing of the user's is replaced: a split file without our marker, or a prepare of another
    download or options (unless --overwrite; ``clear``: then remove the images that prepare wrote)."""
    if marker is None:
        if split_path.exists():
            raise SusxError(
                f"{split_path} exists and was not written by susx datasets prepare",
                hint="move it away, or prepare into another -o",
            )
        return
    if marker.get("fingerprint") == fingerprint:
        return  # an unfinished prepare of the same download: resume it
    if not overwrite:
        state = "a prepare" if marker.get("complete") else "an unfinished prepare"
        raise SusxError(
            f"{folder} holds {state} of another download or other options",
            hint="pass --overwrite to replace it, or prepare into another -o",
        )
    if clear:
        prepared.clear_written(folder, split_path)


def _source_prefix(folder: Path, source: Path) -> str:
    """Where the rows' paths start, relative to the prepared folder: the download itself when it lies
    inside the folder, else a link ``source`` -> the download."""
    try:
        inside = source.resolve().relative_to(folder.resolve())
    except ValueError:
        prepared.link_source(folder, source)
        return f"{prepared.SOURCE_LINK}/"
    return "" if str(inside) == "." else f"{inside.as_posix()}/"


def _summary(converted: Converted, splits: dict[str, list[list[Any]]], written: int) -> dict[str, Any]:
    return {
        "classes": len(converted.classes),
        "splits": {k: len(v) for k, v in splits.items()},
        "missing": len(converted.missing),
        "images_written": written,
    }


def _record(converted: Converted, source: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """What the split file says about itself under "prepared"."""
    return {
        "tool": common.tool_info(),
        "source": common.resolved_path(source),
        "split": converted.split,
        "class_names": converted.cleaning,
        "counts": summary,
        "missing": converted.missing,
    }
