"""Where images come from: support folders, class folders, CoOp-style splits, or unlabelled folders.

Every labelled item gets its label from an explicit mapping (manifest, split row, or folder name
matched to the class list by name), never from the order of a sorted folder listing.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common, support
from susx_cli.classnames import classes_from_split, folder_key
from susx_cli.errors import SusxError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


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
    layout: str  # support | class-folders | split | unlabelled
    inputs: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def from_support(root: Path, verify: bool = True) -> ImageSet:
    """The images of a support folder, each carrying its recorded size (always checked when read) and
    sha256 (checked unless ``verify`` is False, for sets too large to hash)."""
    s = support.read_support(root)
    items = [
        ImageItem(
            root / r["path"], int(r["class_index"]), r["path"],
            sha256=r.get("sha256") if verify else None, size=r.get("bytes"),
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


def from_class_folders(root: Path, classes: list[str]) -> ImageSet:
    """``root/<class name>/*.jpg``; folder names are matched to class names (case, '_' and '-' ignored)."""
    by_key = {folder_key(name): i for i, name in enumerate(classes)}
    items: list[ImageItem] = []
    unmatched = []
    folder_of: dict[int, str] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
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
    listing = common.listing_identity(root, (it.path for it in items), "class-folders")
    return ImageSet(classes, items, "class-folders", [listing])


def from_split(
    split_file: Path, split: str, image_root: Path | None, shots: int | None = None, seed: int = 0
) -> ImageSet:
    """Rows ``[relative_path, label, classname]`` of one split; optionally K random shots per class."""
    data = common.read_json(split_file, "split file")
    if not isinstance(data, dict) or split not in data:
        have = ", ".join(sorted(data)) if isinstance(data, dict) else "none"
        raise SusxError(f"{split_file} has no split {split!r} (it has: {have})", hint="choose --split train|val|test")
    classes = classes_from_split(data, split_file)
    root = image_root or split_file.parent
    items = [ImageItem(root / rel, int(label), str(rel)) for rel, label, _ in data[split]]
    options: dict[str, Any] = {"split": split}
    if shots is not None:
        items = sample_shots(items, len(classes), shots, seed, classes)
        options.update({"shots": shots, "seed": seed})
    listing = common.listing_identity(root, (it.path for it in items), "split-images")
    return ImageSet(classes, items, "split", [common.identity(split_file, "coop-split"), listing], options)


def sample_shots(items: list[ImageItem], num_classes: int, shots: int, seed: int, classes: list[str]) -> list[ImageItem]:
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
    """Pick the layout of ``path``: support folder, split JSON, class folders, or unlabelled images.

    ``verify=False`` skips the sha256 check of a support folder's images (their sizes are still checked).
    """
    if not path.exists():
        raise SusxError(f"{path} does not exist", hint="check the path")
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise SusxError(f"{path} is neither an image folder nor a split JSON", hint="pass a folder or split file")
        if split is None:
            raise SusxError(f"{path} is a split file; say which split to use", hint="add --split train|val|test")
        image_set = from_split(path, split, image_root, shots, seed)
    elif support.is_support_dir(path):
        image_set = from_support(path, verify)
    elif unlabelled or classes is None:
        if any(p.is_dir() for p in path.iterdir()) and not unlabelled:
            raise SusxError(
                f"{path} has sub-folders but no class list to match them against",
                hint="pass --classes prompts.json (or a class file), or --unlabelled for images without labels",
            )
        image_set = from_unlabelled(path)
    else:
        image_set = from_class_folders(path, classes)
    if shots is not None and image_set.layout != "split":
        if image_set.classes is None:
            raise SusxError("--shots needs labelled images", hint="use class folders or a split file")
        image_set.items = sample_shots(image_set.items, len(image_set.classes), shots, seed, image_set.classes)
        image_set.options.update({"shots": shots, "seed": seed})
    if not image_set.items:
        raise SusxError(f"{path} holds no images", hint=f"supported extensions: {', '.join(sorted(IMAGE_EXTS))}")
    return image_set
