"""Where images come from: support folders, class folders, CoOp-style splits, ``path,label`` tables, or
unlabelled folders.

Every labelled item gets its label from an explicit mapping (manifest, split row, table row, folder name
matched to the class list by name, or ImageNet's WordNet id), never from the order of a sorted folder
listing.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli import classnames
from susx_cli.artifacts import common, support
from susx_cli.classnames import classes_from_split, folder_key
from susx_cli.errors import SusxError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}  # ``path,label`` tables, by file suffix


@dataclass(frozen=True)
class ImageItem:
    path: Path
    label: int  # index into the class list, -1 when unknown
    key: str  # stable id written to artifacts (relative path)
    # What a support manifest recorded of the file (None: nothing recorded, or not to be checked).
    sha256: str | None = None
    size: int | None = None


@dataclass
class ImageSet:
    classes: list[str] | None
    items: list[ImageItem]
    layout: str  # support | class-folders | wordnet-folders | table | split | unlabelled
    inputs: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


def without_keys(image_set: ImageSet, keys: list[str], what: str) -> ImageSet:
    """``image_set`` less the items of these keys, the sorted keys recorded in its options (so that another
    list is another set of options). A key that names no item is refused: a typo must not exclude nothing."""
    if not keys:
        return image_set
    known = {item.key for item in image_set.items}
    unknown = [k for k in keys if k not in known]
    if unknown:
        example = next(iter(known), "none")
        raise SusxError(
            f"{what}: {len(unknown)} key(s) name no image of the input, e.g. {unknown[0]!r}",
            hint=f"use the keys susx writes (e.g. {example!r}): `susx inspect FEATURES --influence` lists them",
        )
    dropped = set(keys)
    items = [item for item in image_set.items if item.key not in dropped]
    if not items:
        raise SusxError(f"{what} leaves no image", hint="exclude fewer keys")
    options = {**image_set.options, "exclude": sorted(dropped)}
    return ImageSet(image_set.classes, items, image_set.layout, image_set.inputs, options)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def from_support(root: Path, verify: bool = True) -> ImageSet:
    """The images of a support folder, each carrying its recorded size (always checked when read) and
    sha256 (checked unless ``verify`` is False, for sets too large to hash)."""
    s = support.read_support(root)
    items = [
        ImageItem(
            root / r["path"],
            int(r["class_index"]),
            r["path"],
            sha256=r.get("sha256") if verify else None,
            size=r.get("bytes"),
        )
        for r in s.rows
    ]
    return ImageSet(s.classes, items, "support", [common.identity(root, common.SUPPORT_SET)])


def recorded_mismatch(data: bytes, sha256: str | None, size: int | None) -> str | None:
    """Which recorded property ``data`` fails ('size' or 'sha256'), None when it matches what was recorded."""
    if isinstance(size, int) and len(data) != size:
        return "size"
    if sha256 and common.sha256_bytes(data) != sha256:
        return "sha256"
    return None


def changed_after_curate(path: str | Path, what: str) -> SusxError:
    """The refusal of a support image whose bytes are not the ones its manifest recorded."""
    return SusxError(
        f"{path} does not match its manifest ({what}); the support set was changed after curate",
        hint="restore the original file, or re-create the support set with `susx curate --overwrite`",
    )


def read_recorded(item: ImageItem) -> bytes:
    """The bytes of ``item``, refused when they are not the ones its manifest recorded."""
    data = Path(item.path).read_bytes()
    mismatch = recorded_mismatch(data, item.sha256, item.size)
    if mismatch:
        raise changed_after_curate(item.path, mismatch)
    return data


def subfolders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def is_wnid_folders(root: Path) -> bool:
    """Whether every sub-folder of ``root`` is named by a WordNet id (ImageNet's ``n01440764/`` layout)."""
    names = [p.name for p in subfolders(root)]
    return bool(names) and all(classnames.is_wnid(n) for n in names)


def from_class_folders(root: Path, classes: list[str]) -> ImageSet:
    """``root/<class name>/*.jpg``; folder names are matched to class names (case, '_' and '-' ignored).

    WordNet-id folders (``n01440764/``) whose ids are not themselves class names are ImageNet classes:
    ``classnames.wnid_labels`` maps them to ``classes``.
    """
    folders = subfolders(root)
    by_key = {folder_key(name): i for i, name in enumerate(classes)}
    layout = "class-folders"
    if is_wnid_folders(root) and not all(folder_key(f.name) in by_key for f in folders):
        wnid = classnames.wnid_labels([f.name for f in folders], classes, str(root))
        by_key = {folder_key(w): label for w, label in wnid.items()}
        layout = "wordnet-folders"
    items: list[ImageItem] = []
    unmatched = []
    folder_of: dict[int, str] = {}
    for folder in folders:
        label = by_key.get(folder_key(folder.name))
        if label is None:
            unmatched.append(folder.name)
            continue
        if label in folder_of:
            raise SusxError(
                f"{root}: folders {folder_of[label]!r} and {folder.name!r} both match class {classes[label]!r}",
                hint="merge them into one folder, or rename one to another class",
            )
        folder_of[label] = folder.name
        items += [ImageItem(p, label, str(p.relative_to(root))) for p in image_files(folder)]
    if unmatched:
        shown = ", ".join(repr(u) for u in unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        raise SusxError(
            f"{root}: {len(unmatched)} folder(s) match no class name: {shown}",
            hint="rename the folders to the class names, or remove them",
        )
    listing = common.listing_identity(root, (it.path for it in items), layout)
    return ImageSet(classes, items, layout, [listing])


@dataclass(frozen=True)
class TableRow:
    line: int  # line number in the file (1 = first line), for error messages
    path: str  # as written: relative to the table's folder (or --image-root), or absolute
    label: str  # a class name or an index into the class list


def read_table(path: Path) -> list[TableRow]:
    """The rows of a ``path,label`` table (``.csv`` comma-, ``.tsv`` tab-separated; UTF-8).

    An optional first row ``path,label`` is a header. Blank lines are skipped; every other row must have
    exactly two cells and a non-empty path.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SusxError(
            f"{path} is not UTF-8 text (byte {exc.start})", hint="save the table as UTF-8"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=TABLE_DELIMITERS[path.suffix.lower()])
    rows: list[TableRow] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            cells = [c.strip() for c in cells]
            if not rows and [c.lower() for c in cells] == ["path", "label"]:
                rows.append(TableRow(0, "", ""))  # header marker, dropped below
                continue
            where = f"{path} row {reader.line_num}"
            if len(cells) != 2:
                raise SusxError(
                    f"{where}: {len(cells)} cell(s), expected 2 (path, label)",
                    hint="one image per row: path,label (an optional header row: path,label)",
                )
            if not cells[0] or not cells[1]:
                raise SusxError(
                    f"{where}: empty {'path' if not cells[0] else 'label'}",
                    hint="every row needs an image path and a label",
                )
            rows.append(TableRow(reader.line_num, cells[0], cells[1]))
    except csv.Error as exc:
        raise SusxError(
            f"{path} row {reader.line_num}: not readable as a table ({exc})", hint="check the quoting"
        ) from None
    return [r for r in rows if r.line]


def table_root(path: Path, image_root: Path | None) -> Path:
    """Where a table's relative paths start: --image-root, else the table's folder."""
    return image_root if image_root is not None else path.parent


def table_inputs(path: Path, image_root: Path | None, rows: list[TableRow]) -> list[dict[str, Any]]:
    """The table file by content, and the images it names by name, size and time."""
    root = table_root(path, image_root)
    files = [root / r.path for r in rows if (root / r.path).is_file()]
    return [common.identity(path, "image-table"), common.listing_identity(root, files, "table-images")]


def _table_label(row: TableRow, classes: list[str], by_key: dict[str, int], where: str) -> int:
    """A row's label: a class name (matched like folder names), else an integer index into ``classes``."""
    label = by_key.get(folder_key(row.label))
    if label is not None:
        return label
    if re.fullmatch(r"[+-]?\d+", row.label):
        index = int(row.label)
        if 0 <= index < len(classes):
            return index
        raise SusxError(
            f"{where}: label index {index} is out of range for {len(classes)} classes",
            hint=f"indices run from 0 to {len(classes) - 1}, in the order of the class list",
        )
    raise SusxError(
        f"{where}: label {row.label!r} is not a class name",
        hint="use a name from the class list (--classes) or its index",
    )


def from_table(path: Path, classes: list[str] | None, image_root: Path | None = None) -> ImageSet:
    """A ``path,label`` CSV/TSV: every row checked (label known, index in range, file present, path once);
    the first bad row is the error, with the number of other bad rows."""
    if classes is None:
        raise SusxError(
            f"{path}: a path,label table needs the class list its labels refer to",
            hint="pass --classes prompts.json (labels are class names or indices into it)",
        )
    rows = read_table(path)
    root = table_root(path, image_root)
    by_key = {folder_key(name): i for i, name in enumerate(classes)}
    items: list[ImageItem] = []
    problems: list[SusxError] = []
    seen: dict[str, int] = {}
    for row in rows:
        where = f"{path} row {row.line}"
        try:
            label = _table_label(row, classes, by_key, where)
            if not (root / row.path).is_file():
                raise SusxError(
                    f"{where}: image {row.path} does not exist under {root}",
                    hint="fix the path, or pass --image-root DIR the paths are relative to",
                )
            if row.path in seen:
                raise SusxError(
                    f"{where}: image {row.path} is listed again (first at row {seen[row.path]})",
                    hint="list every image once",
                )
        except SusxError as exc:
            problems.append(exc)
            continue
        seen[row.path] = row.line
        items.append(ImageItem(root / row.path, label, row.path))
    if problems:
        first = problems[0]
        more = f" ({len(problems) - 1} more bad row(s))" if len(problems) > 1 else ""
        raise SusxError(first.message + more, hint=first.hint)
    return ImageSet(classes, items, "table", table_inputs(path, image_root, rows))


def from_split(
    split_file: Path, split: str, image_root: Path | None, shots: int | None = None, seed: int = 0
) -> ImageSet:
    """Rows ``[relative_path, label, classname]`` of one split; optionally K random shots per class."""
    data = common.read_json(split_file, "split file")
    if not isinstance(data, dict) or split not in data:
        have = ", ".join(sorted(data)) if isinstance(data, dict) else "none"
        raise SusxError(
            f"{split_file} has no split {split!r} (it has: {have})", hint="choose --split train|val|test"
        )
    classes = classes_from_split(data, split_file)
    root = image_root or split_file.parent
    items = [ImageItem(root / rel, int(label), str(rel)) for rel, label, _ in data[split]]
    options: dict[str, Any] = {"split": split}
    if shots is not None:
        items = sample_shots(items, len(classes), shots, seed, classes)
        options.update({"shots": shots, "seed": seed})
    listing = common.listing_identity(root, (it.path for it in items), "split-images")
    return ImageSet(classes, items, "split", [common.identity(split_file, "coop-split"), listing], options)


def sample_shots(
    items: list[ImageItem], num_classes: int, shots: int, seed: int, classes: list[str]
) -> list[ImageItem]:
    """K items per class drawn with one seeded generator, class by class in index order."""
    if shots < 1:
        raise SusxError(f"--shots must be at least 1, got {shots}", hint="e.g. --shots 16")
    per_class: dict[int, list[ImageItem]] = defaultdict(list)
    for item in items:
        per_class[item.label].append(item)
    rng = random.Random(seed)
    chosen: list[ImageItem] = []
    for label in range(num_classes):
        pool = sorted(per_class.get(label, []), key=lambda it: it.key)
        if len(pool) < shots:
            raise SusxError(
                f"class {classes[label]!r} has {len(pool)} images in this split, fewer than --shots {shots}",
                hint="lower --shots or use a larger split",
            )
        chosen += rng.sample(pool, shots)
    return chosen


def from_unlabelled(root: Path) -> ImageSet:
    files = image_files(root)
    items = [ImageItem(p, -1, str(p.relative_to(root))) for p in files]
    return ImageSet(None, items, "unlabelled", [common.listing_identity(root, files, "unlabelled")])


def resolve(
    path: Path,
    *,
    classes: list[str] | None = None,
    split: str | None = None,
    image_root: Path | None = None,
    shots: int | None = None,
    seed: int = 0,
    unlabelled: bool = False,
    verify: bool = True,
) -> ImageSet:
    """Pick the layout of ``path``: support folder, split JSON, ``path,label`` CSV/TSV, class folders (by name
    or WordNet id), or unlabelled images.

    ``verify=False`` skips the sha256 check of a support folder's images (their sizes are still checked).
    """
    if not path.exists():
        raise SusxError(f"{path} does not exist", hint="check the path")
    if path.is_file():
        if path.suffix.lower() in TABLE_DELIMITERS:
            if split is not None:
                raise SusxError(
                    f"{path} is a path,label table; --split applies to split JSON files", hint="drop --split"
                )
            image_set = from_table(path, classes, image_root)
        elif path.suffix.lower() != ".json":
            raise SusxError(
                f"{path} is neither an image folder, a split JSON nor a path,label CSV/TSV",
                hint="pass a folder, a split file, or a .csv/.tsv table",
            )
        elif split is None:
            raise SusxError(
                f"{path} is a split file; say which split to use", hint="add --split train|val|test"
            )
        else:
            image_set = from_split(path, split, image_root, shots, seed)
    elif support.is_support_dir(path):
        image_set = from_support(path, verify)
    elif classes is None and not unlabelled and is_wnid_folders(path):
        # ImageNet's layout without a class list: its 1000 classes, named as open_clip names them.
        from susx_cli.datasets.registry import class_names

        image_set = from_class_folders(path, class_names("imagenet"))
    elif unlabelled or not any(p.is_dir() for p in path.iterdir()):
        # A flat folder of images has no labels, whether or not a class list came with it.
        image_set = from_unlabelled(path)
    elif classes is None:
        raise SusxError(
            f"{path} has sub-folders but no class list to match them against",
            hint="pass --classes prompts.json (or a class file), or --unlabelled for images without labels",
        )
    else:
        image_set = from_class_folders(path, classes)
    if shots is not None and image_set.layout != "split":
        if image_set.classes is None:
            raise SusxError("--shots needs labelled images", hint="use class folders or a split file")
        image_set.items = sample_shots(
            image_set.items, len(image_set.classes), shots, seed, image_set.classes
        )
        image_set.options.update({"shots": shots, "seed": seed})
    if not image_set.items:
        raise SusxError(
            f"{path} holds no images", hint=f"supported extensions: {', '.join(sorted(IMAGE_EXTS))}"
        )
    return image_set
