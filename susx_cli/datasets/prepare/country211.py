"""Country211 as torchvision and OpenAI's instructions extract it: ``country211/{train,valid,test}/<ISO
3166-1 alpha-2 code>/*.jpg``.

Classes: the codes in sorted order (torchvision's ImageFolder order), named by the country names of
``susx_cli/data/country_names.json`` (common English short names of ISO 3166-1 alpha-2 codes; ``XK``,
Kosovo, is user-assigned). Split: the official train / valid (as val) / test folders.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from susx_cli.datasets.prepare.base import Converted, files_under, find_root, missing, shown
from susx_cli.errors import SusxError

DATASET = "country211"
SPLITS = {"train": "train", "val": "valid", "test": "test"}
NEEDS = "train/, valid/ and test/, each with ISO-code folders (AD/ ... ZW/)"
CLEANING = ["ISO 3166-1 alpha-2 code to country name (data/country_names.json)"]


def country_names() -> dict[str, str]:
    text = resources.files("susx_cli").joinpath("data/country_names.json").read_text(encoding="utf-8")
    return dict(json.loads(text)["names"])


def _root(source: Path) -> Path:
    root = find_root(source, ("country211",), lambda p: all((p / f).is_dir() for f in SPLITS.values()))
    if root is None:
        absent = [f"{f}/" for f in SPLITS.values() if not (source / f).is_dir()]
        raise missing(DATASET, " and ".join(absent), source, NEEDS)
    return root


def _codes(root: Path) -> list[str]:
    per_split = {f: sorted(p.name for p in (root / f).iterdir() if p.is_dir()) for f in SPLITS.values()}
    codes = sorted(set().union(*per_split.values()))
    for folder, present in per_split.items():
        lacking = sorted(set(codes) - set(present))
        if lacking:
            raise missing(DATASET, f"{folder}/ country folder(s) {shown(lacking)}", root, NEEDS)
    return codes


def inputs(source: Path) -> list[Path]:
    root = _root(source)
    return [f for folder in SPLITS.values() for f in files_under(root / folder)]


def convert(source: Path, seed: int) -> Converted:
    root = _root(source)
    prefix = root.relative_to(source).as_posix()
    codes = _codes(root)
    names = country_names()
    unknown = [c for c in codes if c not in names]
    if unknown:
        raise SusxError(
            f"{DATASET}: folder(s) {shown(unknown)} under {root} are not ISO 3166-1 alpha-2 codes",
            hint="Country211's class folders are named by country code (AD, AE, ...)",
        )
    rows: dict[str, list[tuple[str, int]]] = {}
    for split, folder in SPLITS.items():
        rows[split] = []
        for label, code in enumerate(codes):
            for image in files_under(root / folder / code):
                key = image.relative_to(root).as_posix()
                rows[split].append((key if prefix == "." else f"{prefix}/{key}", label))
    record = {"method": "official", "splits": dict(SPLITS)}
    return Converted([names[c] for c in codes], rows, record, CLEANING)
