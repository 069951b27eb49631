"""Caltech-256 as its archive extracts: ``256_ObjectCategories/NNN.name/*.jpg``, 257 folders.

Classes: folders 001 to 256 in number order; 257.clutter is left out (the paper's 256 classes). Names:
the number prefix removed, a trailing ``-101`` removed (classes taken over from Caltech-101, such as
``airplanes-101``), ``-`` and ``_`` to spaces. Split (no official one): seeded, per image key
``<folder>/<file>``, train 0.5 / val 0.2 / test 0.3; ``--split-file`` reproduces the SuS-X authors' split.
"""

from __future__ import annotations

import re
from pathlib import Path

from susx_cli.datasets.prepare.base import (
    Converted,
    files_under,
    find_root,
    missing,
    seeded_record,
    seeded_split,
    shown,
    strip_number,
    words,
)
from susx_cli.errors import SusxError

DATASET = "caltech256"
NEEDS = "256_ObjectCategories/ with the folders 001.ak47 ... 256.toad (the Caltech-256 archive)"
CLUTTER = 257
FRACTIONS = {"train": 0.5, "val": 0.2, "test": 0.3}
CLEANING = ["number prefix removed", "trailing '-101' removed", "'-' and '_' to spaces"]
_CLASS_FOLDER = re.compile(r"^(\d{3})\.(.+)$")


def clean_name(folder: str) -> str:
    return words(re.sub(r"-101$", "", strip_number(folder)), "-_")


def _class_folders(source: Path) -> tuple[Path, list[Path]]:
    def numbered(p: Path) -> list[Path]:
        return sorted(c for c in p.iterdir() if c.is_dir() and _CLASS_FOLDER.match(c.name))

    root = find_root(source, ("256_ObjectCategories",), lambda p: bool(numbered(p)))
    if root is None:
        raise missing(DATASET, "256_ObjectCategories/ (folders NNN.name)", source, NEEDS)
    by_number = {int(f.name[:3]): f for f in numbered(root)}  # the pattern makes the first 3 digits
    by_number.pop(CLUTTER, None)
    gaps = sorted(set(range(1, max(by_number, default=1) + 1)) - set(by_number))
    if gaps:
        raise missing(DATASET, f"class folder(s) number {shown([f'{n:03d}' for n in gaps])}", root, NEEDS)
    folders = [by_number[n] for n in sorted(by_number)]
    return root, folders


def inputs(source: Path) -> list[Path]:
    _, folders = _class_folders(source)
    return [f for folder in folders for f in files_under(folder)]


def convert(source: Path, seed: int) -> Converted:
    root, folders = _class_folders(source)
    prefix = root.relative_to(source).as_posix()
    rows: dict[str, list[tuple[str, int]]] = {name: [] for name in FRACTIONS}
    for label, folder in enumerate(folders):
        images = files_under(folder)
        if not images:
            raise SusxError(
                f"{DATASET}: class folder {folder} holds no images", hint="extract the archive again"
            )
        for image in images:
            key = image.relative_to(root).as_posix()
            rel = f"{prefix}/{key}" if prefix != "." else key
            rows[seeded_split(key, seed, FRACTIONS)].append((rel, label))
    classes = [clean_name(f.name) for f in folders]
    return Converted(classes, rows, seeded_record(seed, FRACTIONS, "all images"), CLEANING)
