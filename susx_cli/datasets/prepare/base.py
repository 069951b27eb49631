"""What every converter shares: its result, the seeded split, class-name rules, one-line refusals."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.errors import SusxError

Rows = dict[str, list[tuple[str, int]]]  # split -> [(relative path, label), ...]


@dataclass
class Converted:
    """A download read as splits. Paths are relative to the download (``source``), or to the prepared
    folder when ``writes_images`` (CIFAR: images written out of pickles)."""

    classes: list[str]
    rows: Rows
    split: dict[str, Any]  # how the split was made: method, fractions, seed (recorded in the split file)
    cleaning: list[str]  # the class-name rules applied, in words
    missing: list[str] = field(default_factory=list)  # images the source lists but the download lacks
    write_images: Callable[[Path], int] | None = None  # writes images under the prepared folder

    @property
    def writes_images(self) -> bool:
        return self.write_images is not None


def missing(dataset: str, what: str, where: Path, needs: str) -> SusxError:
    """The one-line refusal of a download that lacks a file or folder."""
    return SusxError(
        f"{dataset}: {what} is missing under {where}", hint=f"{dataset} from its usual source needs {needs}"
    )


def find_root(source: Path, children: tuple[str, ...], wanted: Callable[[Path], bool]) -> Path | None:
    """``source`` itself, or the first of ``children`` under it, that ``wanted`` accepts (a user may
    point --from at the archive's folder or at the folder it extracted into)."""
    for candidate in (source, *(source / c for c in children)):
        if candidate.is_dir() and wanted(candidate):
            return candidate
    return None


def hash_fraction(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, key): the same on every machine, whatever else the download holds."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def seeded_split(key: str, seed: int, fractions: dict[str, float]) -> str:
    """The split of one image under the seeded rule: the first split whose running sum of fractions
    exceeds the image key's ``hash_fraction``."""
    u = hash_fraction(key, seed)
    total = 0.0
    for name, fraction in fractions.items():
        total += fraction
        if u < total:
            return name
    return next(reversed(fractions))


def seeded_record(seed: int, fractions: dict[str, float], of: str) -> dict[str, Any]:
    return {
        "method": "seeded",
        "rule": "split = first s with u < sum of fractions up to s, u = sha256(f'{seed}\\0{key}')[:8] / 2**64",
        "seed": seed,
        "fractions": fractions,
        "of": of,
    }


def strip_number(name: str) -> str:
    """'001.ak47' -> 'ak47' (the class folders' index prefix)."""
    return re.sub(r"^\d+\.", "", name)


def words(name: str, separators: str = "_") -> str:
    """Separators to spaces, runs of spaces collapsed."""
    for sep in separators:
        name = name.replace(sep, " ")
    return " ".join(name.split())


def read_lines(path: Path, dataset: str, needs: str) -> list[str]:
    """The non-blank lines of a text file of the download; one line naming it when absent or unreadable."""
    if not path.is_file():
        raise missing(dataset, path.name, path.parent, needs)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SusxError(
            f"{dataset}: {path} cannot be read ({exc.__class__.__name__})", hint="download it again"
        ) from None
    return [line for line in text.splitlines() if line.strip()]


def files_under(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted."""
    from susx_cli.imagesets import IMAGE_EXTS

    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def shown(items: list[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (" ..." if len(items) > limit else "")
