"""Birdsnap as its ``get-birdsnap.py`` leaves it: ``species.txt`` (tab-separated, header ``id common
scientific dir``), ``images.txt`` (tab-separated, header with ``path`` and ``species_id``),
``test_images.txt`` (header ``path``, one path a line) and ``images/<path>``.

The images are fetched from URLs and many are gone, so a download holds a subset: the images the lists
name but the download lacks are counted, listed in the split file (``prepared.missing``) and warned
about, never dropped silently. Classes: ``species.txt`` in id order, named by their common name. Split: the
listed test images; the rest divided seeded, per image path, into train 0.8 / val 0.2; ``--split-file``
reproduces the SuS-X authors' split.
"""

from __future__ import annotations

from pathlib import Path

from susx_cli.datasets.prepare.base import Converted, missing, read_lines, seeded_record, seeded_split, words
from susx_cli.errors import SusxError

DATASET = "birdsnap"
TEXT_FILES = ("species.txt", "images.txt", "test_images.txt")
NEEDS = f"{', '.join(TEXT_FILES)} and images/ (the folder get-birdsnap.py downloads into)"
FRACTIONS = {"train": 0.8, "val": 0.2}
CLEANING = ["the common name of species.txt, whitespace collapsed"]


def _columns(path: Path, wanted: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The ``wanted`` columns of a tab-separated file with a header line."""
    lines = read_lines(path, DATASET, NEEDS)
    header = lines[0].rstrip("\n").split("\t") if lines else []
    absent = [c for c in wanted if c not in header]
    if absent:
        raise SusxError(
            f"{DATASET}: {path} has no column(s) {', '.join(absent)} in its header", hint="download it again"
        )
    index = [header.index(c) for c in wanted]
    rows = []
    for line in lines[1:]:
        cells = line.rstrip("\n").split("\t")
        if len(cells) <= max(index):
            raise SusxError(f"{DATASET}: {path} has a short line: {line[:80]!r}", hint="download it again")
        rows.append(tuple(cells[i].strip() for i in index))
    return rows


def inputs(source: Path) -> list[Path]:
    for name in TEXT_FILES:
        if not (source / name).is_file():
            raise missing(DATASET, name, source, NEEDS)
    if not (source / "images").is_dir():
        raise missing(DATASET, "images/", source, NEEDS)
    listed = [source / "images" / path for path, _ in _columns(source / "images.txt", ("path", "species_id"))]
    return [source / name for name in TEXT_FILES] + [p for p in listed if p.is_file()]


def convert(source: Path, seed: int) -> Converted:
    inputs(source)  # the lists and images/ exist
    species = sorted(_columns(source / "species.txt", ("id", "common")), key=lambda r: int(r[0]))
    label_of = {sid: i for i, (sid, _) in enumerate(species)}
    test = {path for (path,) in _columns(source / "test_images.txt", ("path",))}
    rows: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    absent = []
    for path, species_id in sorted(_columns(source / "images.txt", ("path", "species_id"))):
        if species_id not in label_of:
            raise SusxError(
                f"{DATASET}: images.txt names species {species_id}, which species.txt lacks",
                hint="download it again",
            )
        if not (source / "images" / path).is_file():
            absent.append(path)
            continue
        split = "test" if path in test else seeded_split(path, seed, FRACTIONS)
        rows[split].append((f"images/{path}", label_of[species_id]))
    if not any(rows.values()):
        raise missing(DATASET, f"every one of the {len(absent)} listed images", source / "images", NEEDS)
    record = {
        **seeded_record(seed, FRACTIONS, "the images not in test_images.txt"),
        "test": "test_images.txt",
    }
    return Converted([words(name) for _, name in species], rows, record, CLEANING, missing=absent)
