"""CUB-200-2011 as its archive extracts: ``CUB_200_2011/`` with ``images.txt`` (``<id> <path>``),
``image_class_labels.txt`` (``<id> <class id>``), ``train_test_split.txt`` (``<id> <1 = train>``),
``classes.txt`` (``<class id> NNN.Name``) and ``images/``.

Classes: ``classes.txt`` in id order; names with the number prefix removed and underscores to spaces
(``001.Black_footed_Albatross`` -> ``Black footed Albatross``). Split: the official test set; the official
train set divided seeded, per image path, into train 0.8 / val 0.2; ``--split-file`` reproduces the SuS-X
authors' split.
"""

from __future__ import annotations

from pathlib import Path

from susx_cli.datasets.prepare.base import (
    Converted,
    find_root,
    missing,
    read_lines,
    seeded_record,
    seeded_split,
    shown,
    strip_number,
    words,
)
from susx_cli.errors import SusxError

DATASET = "cub"
TEXT_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
NEEDS = f"CUB_200_2011/ with {', '.join(TEXT_FILES)} and images/ (the CUB-200-2011 archive)"
FRACTIONS = {"train": 0.8, "val": 0.2}
CLEANING = ["number prefix removed", "underscores to spaces"]


def _root(source: Path) -> Path:
    root = find_root(source, ("CUB_200_2011",), lambda p: (p / "images.txt").is_file())
    if root is None:
        raise missing(DATASET, "CUB_200_2011/images.txt", source, NEEDS)
    return root


def _table(root: Path, name: str) -> dict[str, str]:
    """``<id> <value>`` lines as {id: value}."""
    table = {}
    for line in read_lines(root / name, DATASET, NEEDS):
        key, _, value = line.strip().partition(" ")
        if not value or not key.isdigit():
            raise SusxError(
                f"{DATASET}: {root / name} has a line that is not '<id> <value>': {line!r}",
                hint="download it again",
            )
        table[key] = value.strip()
    return table


def inputs(source: Path) -> list[Path]:
    root = _root(source)
    paths = _table(root, "images.txt")
    return [root / name for name in TEXT_FILES] + [root / "images" / p for p in paths.values()]


def convert(source: Path, seed: int) -> Converted:
    root = _root(source)
    prefix = root.relative_to(source).as_posix()
    paths, labels, is_train, class_rows = (_table(root, name) for name in TEXT_FILES)
    class_ids = sorted(class_rows, key=int)
    label_of = {cid: i for i, cid in enumerate(class_ids)}
    absent = [p for p in paths.values() if not (root / "images" / p).is_file()]
    if absent:
        raise missing(
            DATASET, f"{len(absent)} of {len(paths)} images ({shown(absent)})", root / "images", NEEDS
        )
    unlisted = [i for i in paths if i not in labels or i not in is_train or labels[i] not in label_of]
    if unlisted:
        raise missing(DATASET, f"the label or split of image id(s) {shown(unlisted)}", root, NEEDS)
    rows: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for image_id in sorted(paths, key=int):
        path = paths[image_id]
        split = seeded_split(path, seed, FRACTIONS) if is_train[image_id] == "1" else "test"
        rel = f"images/{path}" if prefix == "." else f"{prefix}/images/{path}"
        rows[split].append((rel, label_of[labels[image_id]]))
    classes = [words(strip_number(class_rows[cid])) for cid in class_ids]
    record = {**seeded_record(seed, FRACTIONS, "the official train set"), "test": "official test set"}
    return Converted(classes, rows, record, CLEANING)
