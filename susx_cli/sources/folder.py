"""`curate --source folder`: an existing image collection (class folders, a split or a path,label table) as a
support set."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from susx_cli import imagesets
from susx_cli.artifacts import common
from susx_cli.artifacts.prompts import Prompts
from susx_cli.artifacts.support import SupportWriter
from susx_cli.classnames import check_same_classes, folder_key, slug
from susx_cli.errors import SusxError
from susx_cli.options import option
from susx_cli.progress import bar, warn
from susx_cli.sources.base import FromOptions, WorkUnit


@dataclass
class FolderOptions:
    """`curate --source folder`: existing images, e.g. k real labelled shots per class."""

    images: Path | None = option(
        None, "--images", help="class folders, a CoOp split JSON, or a path,label CSV/TSV.", path="input"
    )
    split: str | None = option(None, "--split", help="split of a split file (train | val | test).")
    image_root: Path | None = option(
        None, "--image-root", help="root of the split's relative paths.", path="input"
    )
    shots: int | None = option(None, "--shots", help="K random images per class.")
    seed: int = option(0, "--seed", help="run seed: which shots are drawn.")
    link: bool = option(False, "--link", help="symlink the images instead of copying them.")

    def __post_init__(self) -> None:
        if self.images is None:
            raise SusxError(
                "--source folder needs --images DIR_OR_SPLIT",
                hint="point it at class folders, a split JSON or a path,label CSV",
            )


@dataclass
class FolderSource(FolderOptions, FromOptions):
    """Copy (or symlink) images into the support layout, e.g. k real labelled shots per class."""

    name: str = "folder"

    @property
    def per_class(self) -> int | None:
        return self.shots

    def options(self) -> dict[str, Any]:
        return {
            "images": str(Path(self.images).resolve()),
            "split": self.split,
            "shots": self.shots,
            "seed": self.seed,
            "mode": "link" if self.link else "copy",
        }

    def _image_set(self, classes: list[str]) -> imagesets.ImageSet:
        image_set = imagesets.resolve(
            self.images,
            classes=classes,
            split=self.split,
            image_root=self.image_root,
            shots=self.shots,
            seed=self.seed,
        )
        if image_set.classes is None:
            raise SusxError(f"{self.images} has no class labels", hint="use class folders or a split file")
        if [folder_key(c) for c in image_set.classes] != [folder_key(c) for c in classes]:
            check_same_classes(image_set.classes, classes, str(self.images), "prompts.json")
        return image_set

    def inputs(self) -> list[dict[str, Any]]:
        """The images read: every image file under the folder, or the split file or table and its rows' images,
        by name, size and time, so a changed image makes the set out of date."""
        if Path(self.images).is_dir():
            root = Path(self.images)
            return [common.listing_identity(root, imagesets.image_files(root), "image-folder")]
        if Path(self.images).suffix.lower() in imagesets.TABLE_DELIMITERS and Path(self.images).is_file():
            try:
                rows = imagesets.read_table(Path(self.images))
            except SusxError:
                return []  # units() gives the error with its hint
            return imagesets.table_inputs(Path(self.images), self.image_root, rows)
        if Path(self.images).is_file() and self.split is not None:
            try:
                return imagesets.from_split(self.images, self.split, self.image_root).inputs
            except SusxError:
                return []  # units() gives the error with its hint
        return []

    def units(self, prompts: Prompts) -> list[WorkUnit]:
        image_set = self._image_set(prompts.classes)
        counts = [0] * len(prompts.classes)
        units = []
        for item in image_set.items:
            order = counts[item.label]
            counts[item.label] += 1
            key = f"{order:05d}_{slug(item.path.stem, 40)}"
            # A support folder's images carry what its manifest recorded, checked on the bytes copied.
            payload = {"src": str(item.path), "ref": item.key, "sha256": item.sha256, "size": item.size}
            units.append(WorkUnit(item.label, order, key, payload))
        empty = [prompts.classes[i] for i, c in enumerate(counts) if c == 0]
        if empty:
            shown = ", ".join(repr(e) for e in empty[:5]) + (" ..." if len(empty) > 5 else "")
            raise SusxError(
                f"{self.images}: no images for {len(empty)} class(es): {shown}", hint="add images for them"
            )
        return units

    def run(self, units: list[WorkUnit], writer: SupportWriter) -> dict[str, Any]:
        bad: list[str] = []
        with bar("import images", total=len(units), unit="img") as progress:
            for unit in units:
                src = Path(unit.payload["src"])
                try:
                    data = src.read_bytes()
                    mismatch = imagesets.recorded_mismatch(
                        data, unit.payload.get("sha256"), unit.payload.get("size")
                    )
                    fmt = None if mismatch else _decoded_format(data, src)
                except Exception as exc:
                    warn(f"skipped unreadable image {src}: {exc.__class__.__name__}")
                    bad.append(str(src))
                    progress.advance()
                    continue
                if mismatch:
                    raise imagesets.changed_after_curate(src, mismatch)
                ext = {"jpeg": "jpg"}.get(fmt, fmt)
                writer.add(
                    unit.class_index,
                    unit.key,
                    data,
                    ext,
                    {"source": "folder", "order": unit.order, "origin": unit.payload["ref"]},
                    link_to=src if self.link else None,
                )
                progress.advance()
        return {"unreadable": bad}


def _decoded_format(data: bytes, src: Path) -> str:
    """The image format of ``data`` after a full decode (a truncated file fails here, not at embed time)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return (img.format or src.suffix.lstrip(".")).lower()
