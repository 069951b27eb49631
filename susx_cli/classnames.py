"""Class lists: reading them from the formats users have, cleaning names explicitly, and checking them."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from susx_cli.errors import SusxError


@dataclass(frozen=True)
class Cleaning:
    """How raw class names become the names used in prompts; recorded in every prompts file."""

    underscores_to_spaces: bool = True
    collapse_whitespace: bool = True

    def apply(self, name: str) -> str:
        if self.underscores_to_spaces:
            name = name.replace("_", " ")
        if self.collapse_whitespace:
            name = " ".join(name.split())
        return name

    def to_dict(self) -> dict[str, bool]:
        return {
            "underscores_to_spaces": self.underscores_to_spaces,
            "collapse_whitespace": self.collapse_whitespace,
        }


NO_CLEANING = Cleaning(underscores_to_spaces=False, collapse_whitespace=False)


def validate_classes(classes: list[str], source: str = "class list") -> list[str]:
    """Refuse an empty list, blank or duplicate names, and names that look like paths out of a folder.

    Support folders use ``<index:04d>_<slug>`` so no name can escape them; a name such as ``../x``
    or one with a NUL byte is still almost surely a mistake in the input, so it is refused.
    """
    if not classes:
        raise SusxError(f"{source} is empty", hint="give at least one class name")
    seen: dict[str, int] = {}
    for index, name in enumerate(classes):
        if not isinstance(name, str) or not name.strip():
            raise SusxError(
                f"{source}: class {index} has an empty name", hint="remove blank lines or entries"
            )
        if any(unicodedata.category(ch) == "Cc" for ch in name):
            raise SusxError(
                f"{source}: class {index} ({name!r}) contains a control character (NUL, newline or tab)",
                hint="fix the class name in the input",
            )
        parts = re.split(r"[/\\]", name)
        if name.startswith(("/", "\\")) or any(part in (".", "..") for part in parts):
            raise SusxError(
                f"{source}: class {index} ({name!r}) looks like a path that would escape the output folder",
                hint="class names must not start with '/' or contain '.' or '..' path parts",
            )
        key = folder_key(name)
        if key in seen:
            other = classes[seen[key]]
            if other == name:
                raise SusxError(
                    f"{source}: class name {name!r} appears twice (indices {seen[key]} and {index})",
                    hint="class names must be unique; rename one of them",
                )
            # Folders and files are matched to classes with this key, so the two would share one label.
            raise SusxError(
                f"{source}: class names {other!r} (index {seen[key]}) and {name!r} (index {index}) differ only in "
                "case, '-', '_', spaces or Unicode form",
                hint="give them names that differ in letters or digits, or merge them into one class",
            )
        seen[key] = index
    return list(classes)


def slug(name: str, max_len: int = 48) -> str:
    """A filesystem-safe, readable folder suffix for a class name (the index prefix keeps it unique)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"[^A-Za-z0-9]+", "_", ascii_name).strip("_").lower()
    return (text[:max_len].rstrip("_")) or "class"


def folder_key(name: str) -> str:
    """Comparison key that matches a folder name to a class name: case, '_', '-', runs of spaces and the
    Unicode form (NFC/NFD, compatibility characters) are ignored; letters and digits all count."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return " ".join(re.sub(r"[_\-]+", " ", folded).split())


def read_class_file(path: Path) -> tuple[list[str], str]:
    """Class names from a text file (one per line), a JSON list, or a CoOp-style split JSON.

    Returns (raw names in index order, format name).
    """
    if not path.exists():
        raise SusxError(f"class file {path} does not exist", hint="check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SusxError(
            f"class file {path} is not UTF-8 text (byte {exc.start} cannot be read)",
            hint="save it as UTF-8, one class name per line",
        ) from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SusxError(
                f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}", hint="fix the file"
            ) from exc
        if isinstance(data, list):
            if not all(isinstance(x, str) for x in data):
                raise SusxError(
                    f"{path}: a JSON class list must hold strings only", hint='e.g. ["cat", "dog"]'
                )
            return data, "json-list"
        if isinstance(data, dict) and data.get("kind") == "susx.prompts":
            return [e["name"] for e in data["entries"]], "prompts"
        if isinstance(data, dict) and any(k in data for k in ("train", "val", "test")):
            return classes_from_split(data, path), "coop-split"
        raise SusxError(
            f"{path}: JSON of an unknown layout",
            hint="use a list of names, a CoOp split {'train': [[path, label, name], ...]}, or a prompts.json",
        )
    names = [line.strip() for line in text.splitlines()]
    return [n for n in names if n and not n.startswith("#")], "text"


def classes_from_split(data: dict, path: Path) -> list[str]:
    """The class list of a CoOp split: label index -> class name, over all splits, checked for gaps."""
    by_label: dict[int, str] = {}
    for split_name in ("train", "val", "test"):
        for row in data.get(split_name, []):
            if not (isinstance(row, list | tuple) and len(row) == 3):
                raise SusxError(
                    f"{path}: rows of split '{split_name}' must be [relative_path, label, classname]",
                    hint="check that this is a CoOp-style split file",
                )
            _, label, name = row
            label = int(label)
            if by_label.setdefault(label, name) != name:
                raise SusxError(
                    f"{path}: label {label} is named both {by_label[label]!r} and {name!r}",
                    hint="fix the split file",
                )
    if not by_label:
        raise SusxError(f"{path}: the split file holds no rows", hint="check the file")
    missing = sorted(set(range(max(by_label) + 1)) - set(by_label))
    if missing:
        raise SusxError(
            f"{path}: labels {missing[:5]} have no rows, so their class names are unknown",
            hint="the split must cover labels 0..C-1",
        )
    return validate_classes([by_label[i] for i in range(len(by_label))], str(path))


def check_same_classes(a: list[str], b: list[str], what_a: str, what_b: str) -> None:
    """Refuse two artifacts whose ordered class lists differ, naming the first difference."""
    if list(a) == list(b):
        return
    if len(a) != len(b):
        detail = f"{len(a)} vs {len(b)} classes"
    else:
        i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
        detail = f"class {i} is {a[i]!r} in one and {b[i]!r} in the other"
        if sorted(a) == sorted(b):
            detail += " (same names, other order)"
    raise SusxError(
        f"the class lists of {what_a} and {what_b} differ: {detail}",
        hint="make both from the same prompts.json",
    )


# ---------------------------------------------------------------------------------------------------
# ImageNet's WordNet-id class folders (``n01440764/`` ...): the one place that maps them to labels.

IMAGENET_CLASSES = 1000
_WNID = re.compile(r"^n\d{8}$")


def is_wnid(name: str) -> bool:
    """Whether a folder name is a WordNet id such as ``n01440764``."""
    return bool(_WNID.match(name))


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids, sorted: position = class index (ImageNet's own label definition,
    the order of open_clip's IMAGENET_CLASSNAMES). Shipped as package data (data/imagenet_wnids.json)."""
    from importlib import resources

    text = resources.files("susx_cli").joinpath("data/imagenet_wnids.json").read_text(encoding="utf-8")
    return list(json.loads(text)["wnids"])


def wnid_labels(wnids: list[str], classes: list[str], where: str) -> dict[str, int]:
    """The label of each WordNet-id folder in ``classes``.

    A 1000-class list is ImageNet-1k in index order, so a folder's label is its id's position among the
    sorted ids. A shorter list (a subset such as ImageNet-R's 200) is matched by name: the id's ImageNet
    class name (open_clip's, as ``susx prompts --dataset imagenet`` writes them) looked up in ``classes``.
    """
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    unknown = [w for w in wnids if w not in index]
    if unknown:
        raise SusxError(
            f"{where}: {len(unknown)} folder(s) are not ImageNet-1k WordNet ids: {_shown(unknown)}",
            hint="WordNet-id folders are read as ImageNet-1k classes; rename the folders to class names otherwise",
        )
    if len(classes) == IMAGENET_CLASSES:
        return {w: index[w] for w in wnids}
    from susx_cli.datasets.registry import class_names

    names = class_names("imagenet")
    by_key = {folder_key(name): i for i, name in enumerate(classes)}
    labels = {w: by_key.get(folder_key(names[index[w]])) for w in wnids}
    unmatched = [f"{w} ({names[index[w]]})" for w, label in labels.items() if label is None]
    if unmatched:
        raise SusxError(
            f"{where}: {len(unmatched)} WordNet-id folder(s) name ImageNet classes missing from the class list: "
            f"{_shown(unmatched)}",
            hint="use a prompts.json made by `susx prompts --dataset imagenet`, or remove those folders",
        )
    return {w: int(label) for w, label in labels.items() if label is not None}


def _shown(items: list[str], limit: int = 5) -> str:
    return ", ".join(repr(x) for x in items[:limit]) + (" ..." if len(items) > limit else "")
