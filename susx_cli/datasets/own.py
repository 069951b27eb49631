"""A user's own dataset for `susx eval --dataset FILE.json`: a small JSON file beside the registered 19.

    {
      "id": "my-birds",                         optional; default: the file's name; names work and result files
      "name": "My birds",                       optional display name
      "classes": ["sparrow", "wren"],           class list in index order, or a class file (text, JSON list);
                                                optional with a split_file (its rows name the classes)
      "split_file": "split.json",               CoOp rows {"train": [[path, label, name], ...], "val": ..., "test": ...}
      "splits": {"test": "test.csv",            or per split: a path,label CSV/TSV table ...
                 "train": "train/"},            ... or class folders (names, or ImageNet WordNet ids)
      "image_root": "images",                   where split-file and table paths start (default: the table's
                                                folder, or the split file's)
      "test_split": "test",                     the split scored (default test)
      "calibration_split": "val",               the labelled split of --calibration val (default val)
      "photo_template": "A photo of a {}."      the one-prompt template (default the paper's)
    }

Paths in the file are relative to its folder. ``load_local`` turns any of these into the CoOp rows every
registered dataset is read as (``registry.LocalSplits``), checking labels as it goes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from susx_cli.errors import SusxError

LAYOUT = "dataset-file"
KEYS = {
    "id",
    "name",
    "classes",
    "split_file",
    "splits",
    "image_root",
    "test_split",
    "calibration_split",
    "photo_template",
}
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def is_dataset_file(value: str) -> bool:
    """Whether an eval --dataset value names a file rather than a registered dataset id."""
    return value.lower().endswith(".json") or os.sep in value or Path(value).is_file()


def _read(path: Path) -> dict[str, Any]:
    from susx_cli.artifacts.common import read_json

    if not path.is_file():
        raise SusxError(
            f"dataset file {path} does not exist",
            hint="check the path, or use a registered id (susx datasets list)",
        )
    data = read_json(path, "dataset file")
    if not isinstance(data, dict):
        raise SusxError(
            f"{path}: a dataset file is a JSON object",
            hint='e.g. {"classes": [...], "splits": {"test": "test.csv"}}',
        )
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise SusxError(
            f"{path}: unknown key(s) {', '.join(unknown)}", hint=f"known keys: {', '.join(sorted(KEYS))}"
        )
    if ("split_file" in data) == ("splits" in data):
        raise SusxError(
            f"{path}: give either split_file or splits",
            hint="split_file: a CoOp split JSON; splits: a table or folder per split",
        )
    return data


def load_spec(path: Path):
    """The ``registry.DatasetSpec`` of a dataset file (its class count and splits are read by ``load_local``)."""
    from susx_cli.classnames import slug
    from susx_cli.datasets.registry import DATASETS, Q_OBJECTS, DatasetSpec
    from susx_cli.templates import DEFAULT_PHOTO

    path = Path(path)
    data = _read(path)
    id_ = str(data.get("id") or slug(path.stem, 48).replace("_", "-"))
    if not _ID.match(id_):
        raise SusxError(
            f"{path}: id {id_!r} is not a short lowercase name", hint="use letters, digits, '-', '_' or '.'"
        )
    if id_ in DATASETS:
        raise SusxError(f"{path}: id {id_!r} is a registered dataset's", hint='give the file another "id"')
    template = data.get("photo_template") or DEFAULT_PHOTO
    if not isinstance(template, str) or template.count("{}") != 1:
        raise SusxError(
            f"{path}: photo_template must hold '{{}}' once (the class name)", hint='e.g. "A photo of a {}."'
        )
    splits = data.get("splits") or {}
    if not isinstance(splits, dict) or not all(isinstance(v, str) for v in splits.values()):
        raise SusxError(
            f"{path}: splits must map split names to a table or folder path", hint='e.g. {"test": "test.csv"}'
        )
    test_split, cal_split = str(data.get("test_split", "test")), str(data.get("calibration_split", "val"))
    return DatasetSpec(
        id_,
        str(data.get("name") or id_),
        0,
        LAYOUT,
        str(path.parent),
        str(path),
        "",
        cal_split,
        test_split,
        notes=f"own dataset described by {path}",
        photo_template=template,
        cupl_questions=Q_OBJECTS,
    )


def _classes(data: dict[str, Any], base: Path, path: Path) -> list[str] | None:
    from susx_cli.classnames import read_class_file, validate_classes

    given = data.get("classes")
    if given is None:
        return None
    if isinstance(given, str):
        names, _ = read_class_file(base / given)
    elif isinstance(given, list) and all(isinstance(x, str) for x in given):
        names = given
    else:
        raise SusxError(
            f"{path}: classes must be a list of names or a class file", hint='e.g. "classes": ["cat", "dog"]'
        )
    return validate_classes(list(names), f"{path} classes")


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:  # an image outside the root keeps its absolute path (root / absolute == absolute)
        return str(p.resolve())


def load_local(spec):
    """The dataset file's splits as CoOp rows (``registry.LocalSplits``); labels checked as they are read."""
    from susx_cli import imagesets
    from susx_cli.artifacts.common import read_json
    from susx_cli.classnames import check_same_classes, classes_from_split, folder_key
    from susx_cli.datasets.registry import LocalSplits

    path = Path(spec.split_file)
    data, base = _read(path), path.parent
    classes = _classes(data, base, path)
    image_root = base / data["image_root"] if data.get("image_root") else None
    if "split_file" in data:
        split_path = base / data["split_file"]
        rows = read_json(split_path, "split file")
        if not isinstance(rows, dict):
            raise SusxError(
                f"{split_path} is not a CoOp split (an object of splits)",
                hint="rows [path, label, name] per split",
            )
        found = classes_from_split(rows, split_path)
        if classes is not None and [folder_key(c) for c in classes] != [folder_key(c) for c in found]:
            check_same_classes(found, classes, str(split_path), f"{path} classes")
        splits = {k: v for k, v in rows.items() if k in ("train", "val", "test")}
        return LocalSplits(spec, base, image_root or split_path.parent, found, splits, None)
    splits: dict[str, list[list[Any]]] = {}
    for name, where in data["splits"].items():
        source = base / where
        if source.is_dir() and classes is None and not imagesets.is_wnid_folders(source):
            raise SusxError(
                f"{path}: split {name!r} is class folders, which need a class list",
                hint='add "classes": [...] (index order) to the dataset file',
            )
        image_set = imagesets.resolve(source, classes=classes, image_root=image_root)
        if image_set.classes is None:
            raise SusxError(
                f"{path}: split {name!r} ({source}) has no labels",
                hint="use a path,label table or class folders",
            )
        if classes is None:
            classes = image_set.classes  # WordNet-id folders without a class list: ImageNet's
        root = image_root or base
        splits[name] = [[_rel(it.path, root), it.label, classes[it.label]] for it in image_set.items]
    assert classes is not None
    return LocalSplits(spec, base, image_root or base, classes, splits, None)
