"""A prepared dataset folder (``susx datasets prepare``): its split file, the images it wrote, its marker.

    <folder>/split_susx_<Name>.json     CoOp rows {split: [[path, label, classname], ...]} plus "prepared"
    <folder>/images/...                  images written out of archives (CIFAR's pickles), when any
    <folder>/source -> FROM              a link to the download when it lies outside the folder
    <folder>/.susx-prepared.json         the marker: written first as incomplete, last as complete

A folder whose marker says incomplete is an unfinished prepare: the next run of the same command resumes
it (images already written are kept: each one is renamed into place whole), and readers refuse it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common
from susx_cli.errors import SusxError

KIND = "susx.prepared_dataset"
MARKER = ".susx-prepared.json"
SOURCE_LINK = "source"


def marker_path(folder: Path) -> Path:
    return Path(folder) / MARKER


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of a prepared folder (None when there is none); a damaged one is refused."""
    path = marker_path(folder)
    if not path.exists():
        return None
    data = common.read_json(path, "prepare marker")
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise SusxError(f"{path} is not a marker of susx datasets prepare", hint="move that file away")
    common.check_header(path, data.get("kind"), data.get("schema_version"), KIND)
    return data


def is_incomplete(folder: Path) -> bool:
    """Whether ``folder`` holds a prepare that did not finish (readers must not use it)."""
    marker = read_marker(folder)
    return marker is not None and not marker.get("complete")


def write_marker(
    folder: Path, fingerprint: dict[str, Any], *, complete: bool, writes_images: bool, summary: dict[str, Any]
) -> None:
    """The marker; ``writes_images`` says ``images/`` is prepare's own (``clear_written`` may remove it)."""
    common.atomic_write_json(
        marker_path(folder),
        {
            "kind": KIND,
            "schema_version": common.schema_version(KIND),
            "complete": complete,
            "writes_images": writes_images,
            "tool": common.tool_info(),
            "created": common.now_iso(),
            "fingerprint": fingerprint,
            "summary": summary,
        },
    )


def write_split(path: Path, splits: dict[str, list[list[Any]]], prepared: dict[str, Any]) -> None:
    """The split file: CoOp rows per split and, under "prepared", how they were made."""
    common.atomic_write_json(path, {**splits, "prepared": prepared})


def write_image(path: Path, data: bytes) -> bool:
    """Write one image file whole (a temporary name renamed into place, so a present file is complete);
    False when it is already there. No fsync: a lost file after a crash is written again by a rerun,
    since the marker stays incomplete until every file is in place."""
    if path.is_file():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise SusxError(
            f"could not write {path}: {exc.strerror or exc}",
            hint="check free disk space and permissions, then re-run the same command: it resumes",
        ) from None
    return True


def link_source(folder: Path, source: Path) -> None:
    """``folder/source`` -> ``source`` (absolute); an existing link elsewhere or a real file is refused."""
    link = folder / SOURCE_LINK
    target = source.resolve()
    if link.is_symlink():
        if link.resolve() == target:
            return
        link.unlink()  # ours, from a prepare of another download (the caller checked --overwrite)
    elif link.exists():
        raise SusxError(
            f"{link} exists and is not a link susx made", hint="move it away, or prepare into another -o"
        )
    folder.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(target, target_is_directory=True)
    except OSError as exc:
        raise SusxError(
            f"could not make the link {link}: {exc.strerror or exc}", hint="check permissions"
        ) from None


def clear_written(folder: Path, split_path: Path) -> None:
    """Before --overwrite: remove the images an earlier prepare wrote (its marker says it writes images,
    its split file names them), so stale files of another download are not taken for new ones. Anything
    else in ``images/`` (a file of the user's, images of a prepare that never wrote its split file) is
    refused, never removed. The split file, link and marker are replaced anyway."""
    marker = read_marker(folder)
    images = Path(folder) / "images"
    if not (marker and marker.get("writes_images") and images.is_dir() and not images.is_symlink()):
        return
    try:
        split = json.loads(split_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        split = {}
    ours = {
        (Path(folder) / row[0]).resolve()
        for rows in split.values()
        if isinstance(rows, list)
        for row in rows
        if isinstance(row, list) and row and isinstance(row[0], str)
    }
    files = [p for p in images.rglob("*") if not p.is_dir()]
    other = next((p for p in files if p.resolve() not in ours), None)
    if other is not None:
        raise SusxError(
            f"{other} was not written by the prepare that {split_path.name} records, so susx will not remove it",
            hint=f"move {images} away (or the files susx did not write), then re-run with --overwrite",
        )
    for path in files:
        path.unlink()
    for sub in sorted((d for d in images.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
        sub.rmdir()
    images.rmdir()
