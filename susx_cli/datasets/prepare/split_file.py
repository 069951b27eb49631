"""The SuS-X authors' published splits (``split_Caltech256.json``, ``split_CUB.json``,
``split_Birdsnap.json``): CoOp rows ``[path, label, classname]`` per split, paths relative to the dataset
folder of their data layout (the folder ``--from`` names). Reproduced row for row: same paths, labels,
class names and order."""

from __future__ import annotations

from pathlib import Path

from susx_cli.artifacts.common import is_safe_relative, read_json
from susx_cli.classnames import classes_from_split
from susx_cli.datasets.prepare.base import Converted, missing, shown
from susx_cli.errors import SusxError

SPLITS = ("train", "val", "test")


def _rows(path: Path) -> tuple[list[str], dict[str, list[list]]]:
    data = read_json(path, "split file")
    if not isinstance(data, dict) or not any(s in data for s in SPLITS):
        raise SusxError(
            f"{path} is not a split file (an object of train/val/test rows)",
            hint="pass the authors' split_<Name>.json",
        )
    classes = classes_from_split(data, path)
    splits = {s: data[s] for s in SPLITS if s in data}
    bad = [r[0] for rows in splits.values() for r in rows if not is_safe_relative(r[0])]
    if bad:
        raise SusxError(
            f"{path}: row paths must be relative and stay inside --from: {shown(bad)}", hint="check the file"
        )
    return classes, splits


def inputs(path: Path, source: Path) -> list[Path]:
    _, splits = _rows(path)
    return [path] + [source / r[0] for rows in splits.values() for r in rows if (source / r[0]).is_file()]


def convert(path: Path, source: Path, dataset: str, *, allow_missing: bool) -> Converted:
    classes, splits = _rows(path)
    absent = [r[0] for rows in splits.values() for r in rows if not (source / r[0]).is_file()]
    if absent and not allow_missing:
        raise missing(
            dataset,
            f"{len(absent)} image(s) the split file names ({shown(absent)})",
            source,
            f"the images {path.name} names",
        )
    lacking = set(absent)
    rows = {
        s: [(r[0], int(r[1])) for r in split_rows if r[0] not in lacking] for s, split_rows in splits.items()
    }
    record = {"method": "published", "file": path.name, "rows": {s: len(r) for s, r in splits.items()}}
    return Converted(classes, rows, record, ["the published split file's names, unchanged"], missing=absent)
