"""`inspect`: describe any artifact; draw a contact sheet of a support folder."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli import imagesets
from susx_cli.artifacts import common, hdf5, support
from susx_cli.errors import SusxError
from susx_cli.progress import warn

# A contact sheet wider than this is refused by image viewers and costs memory for nothing.
MAX_SHEET_WIDTH = 16384


@dataclass
class InspectResult:
    description: dict[str, Any]
    outputs: list[Path] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The description; empty when a picture was drawn, so that its path stands alone on stdout."""
        return "" if self.outputs else json.dumps(self.description, indent=2, ensure_ascii=False, default=str)

    def to_json(self) -> dict[str, Any]:
        return self.description


def describe(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SusxError(f"{path} does not exist", hint="check the path")
    if path.is_dir():
        if not support.is_support_dir(path):
            raise SusxError(f"{path} is a folder but not a susx support set", hint="pass an artifact made by susx")
        return support.describe(path)
    if path.suffix.lower() in (".h5", ".hdf5", ".partial") or hdf5.read_kind(path):
        try:
            return hdf5.describe(path)
        except OSError as exc:
            raise SusxError(f"{path} is not a readable HDF5 file", hint="pass an artifact made by susx") from exc
    data = common.read_json(path)
    if not isinstance(data, dict) or "kind" not in data:
        raise SusxError(f"{path} is not a susx artifact (no 'kind')", hint="pass an artifact made by susx")
    out = {k: v for k, v in data.items() if k not in ("entries",)}
    if "entries" in data:
        entries = data["entries"]
        out["num_classes"] = len(entries)
        out["texts_per_class"] = {
            pool: [len(e.get(pool, [])) for e in entries][:10] for pool in ("template", "cupl")
        }
        out["example"] = entries[0] if entries else None
        out["classes"] = data.get("classes", [])[:10]
    return out


def contact_sheet(root: Path, output: Path, per_class: int = 8, thumb: int = 96, max_classes: int = 100) -> Path:
    """A PNG grid: one row per class (label on the left), up to ``per_class`` thumbnails each."""
    from PIL import Image, ImageDraw

    if per_class < 1:
        raise SusxError(f"--per-class must be at least 1, got {per_class}", hint="e.g. 8")
    label_w = 180
    fits = (MAX_SHEET_WIDTH - label_w) // (thumb + 4)
    if per_class > fits:
        warn(f"--per-class {per_class} would make a sheet wider than {MAX_SHEET_WIDTH} pixels; showing {fits} per class")
        per_class = fits
    # Read as embed reads it: paths stay inside the folder, and each image is checked against its manifest.
    s = imagesets.from_support(root)
    items_by_class: dict[int, list[imagesets.ImageItem]] = {}
    for item in s.items:
        items_by_class.setdefault(item.label, []).append(item)
    classes = list(range(min(len(s.classes), max_classes)))
    sheet = Image.new("RGB", (label_w + per_class * (thumb + 4), len(classes) * (thumb + 4) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for r, ci in enumerate(classes):
        y = 4 + r * (thumb + 4)
        draw.text((4, y + thumb // 2 - 6), f"{ci}: {s.classes[ci]}"[:28], fill="black")
        for c, item in enumerate(items_by_class.get(ci, [])[:per_class]):
            try:
                with Image.open(io.BytesIO(imagesets.read_recorded(item))) as img:
                    tile = img.convert("RGB")
                    tile.thumbnail((thumb, thumb))
            except OSError:
                continue
            sheet.paste(tile, (label_w + c * (thumb + 4), y))
    common.atomic_write_bytes(output, _png_bytes(sheet))
    return output


def _png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def confusion_picture(path: Path, output: Path) -> Path:
    """Draw the confusion matrix (or, for many classes, the top confusions) of a predictions file."""
    from susx_cli.plots import confusion_figure

    preds = hdf5.read_predictions(path)
    pc = preds.per_class
    if pc is None:
        why = ("its queries have no labels" if not (preds.labels >= 0).any()
               else "it was written by an older susx, before per-class results")
        raise SusxError(f"{path} holds no confusion data: {why}",
                        hint="re-run susx predict --overwrite on labelled query features")
    title = f"{preds.method}: confusion over {len(preds.classes)} classes, {int(pc.queries.sum())} queries"
    return confusion_figure(preds.classes, output, confusion=pc.confusion, top_confused=pc.top_confused,
                            top_counts=pc.top_counts, title=title)


def inspect_artifact(path: Path, contact_sheet: Path | None = None, per_class: int = 8,
                     confusion: Path | None = None) -> InspectResult:
    description = describe(path)
    result = InspectResult(description)
    if contact_sheet is not None:
        if not support.is_support_dir(path):
            raise SusxError("--contact-sheet needs a support folder", hint="pass the -o folder of `susx curate`")
        result.outputs.append(globals()["contact_sheet"](path, contact_sheet, per_class=per_class))
    if confusion is not None:
        if description.get("kind") != common.PREDICTIONS:
            raise SusxError("--confusion needs a predictions file", hint="pass the -o file of `susx predict`")
        result.outputs.append(confusion_picture(path, confusion))
    return result
