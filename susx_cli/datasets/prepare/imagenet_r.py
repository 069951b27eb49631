"""ImageNet-R as its archive extracts: ``imagenet-r/<WordNet id>/*.jpg``, 200 of ImageNet's classes.

Classes: the WordNet ids in sorted order, named by susx's ImageNet names (open_clip's, with the registry's
renames of two repeated names; ``susx_cli/data/imagenet_classnames.json`` + ``imagenet_wnids.json``).
Split: all images are the test set (the paper calibrated on it).
"""

from __future__ import annotations

from pathlib import Path

from susx_cli.classnames import imagenet_wnids, is_wnid
from susx_cli.datasets.prepare.base import Converted, files_under, find_root, missing, shown
from susx_cli.errors import SusxError

DATASET = "imagenet-r"
NEEDS = "imagenet-r/ with 200 WordNet-id folders (n01443537/ ...) (the ImageNet-R archive)"
CLEANING = ["WordNet id to susx's ImageNet class name (open_clip's names, two repeats renamed)"]


def _folders(source: Path) -> tuple[Path, list[Path]]:
    def wnid_folders(p: Path) -> list[Path]:
        return sorted(c for c in p.iterdir() if c.is_dir() and is_wnid(c.name))

    root = find_root(source, ("imagenet-r",), lambda p: bool(wnid_folders(p)))
    if root is None:
        raise missing(DATASET, "imagenet-r/ (WordNet-id folders)", source, NEEDS)
    return root, wnid_folders(root)


def inputs(source: Path) -> list[Path]:
    _, folders = _folders(source)
    return [f for folder in folders for f in files_under(folder)]


def convert(source: Path, seed: int) -> Converted:
    from susx_cli.datasets.registry import class_names

    root, folders = _folders(source)
    prefix = root.relative_to(source).as_posix()
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    unknown = [f.name for f in folders if f.name not in index]
    if unknown:
        raise SusxError(
            f"{DATASET}: folder(s) {shown(unknown)} under {root} are not ImageNet-1k WordNet ids",
            hint="ImageNet-R's 200 classes are ImageNet-1k classes; download it again",
        )
    names = class_names("imagenet")
    rows: list[tuple[str, int]] = []
    for label, folder in enumerate(folders):
        for image in files_under(folder):
            key = image.relative_to(root).as_posix()
            rows.append((key if prefix == "." else f"{prefix}/{key}", label))
    classes = [names[index[f.name]] for f in folders]
    return Converted(
        classes, {"test": rows}, {"method": "official", "splits": {"test": "all images"}}, CLEANING
    )
