"""`inspect`: describe any artifact; draw a contact sheet of a support folder."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from susx_cli import classnames, imagesets, plots
from susx_cli.artifacts import common, hdf5, support
from susx_cli.errors import SusxError
from susx_cli.progress import warn
from susx_cli.stages.options import CLASSES_PER_PAGE, InspectOptions
from susx_cli.stages.results import InspectResult

# A contact sheet wider than this is refused by image viewers and costs memory for nothing.
MAX_SHEET_WIDTH = 16384


def describe(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SusxError(f"{path} does not exist", hint="check the path")
    if path.is_dir():
        if not support.is_support_dir(path):
            raise SusxError(
                f"{path} is a folder but not a susx support set", hint="pass an artifact made by susx"
            )
        return support.describe(path)
    if path.suffix.lower() in (".h5", ".hdf5", ".partial") or hdf5.read_kind(path):
        try:
            return hdf5.describe(path)
        except OSError as exc:
            raise SusxError(
                f"{path} is not a readable HDF5 file", hint="pass an artifact made by susx"
            ) from exc
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


def pick_classes(classes: list[str], spec: str | None) -> list[int]:
    """Class indices named by ``--classes``: a file of class names (one a line, or any class file susx
    reads), or a comma list of names or indices; names match as folder names do (case, '_', '-' ignored).
    None: every class."""
    if spec is None:
        return list(range(len(classes)))
    path = Path(spec)
    wanted = classnames.read_class_file(path)[0] if path.is_file() else [p.strip() for p in spec.split(",")]
    wanted = [w for w in wanted if w]
    by_key = {classnames.folder_key(name): i for i, name in enumerate(classes)}
    picked: list[int] = []
    unknown = []
    for w in wanted:
        i = by_key.get(classnames.folder_key(w))
        if i is None and w.isdigit() and int(w) < len(classes):
            i = int(w)
        if i is None:
            unknown.append(w)
        elif i not in picked:
            picked.append(i)
    if unknown or not picked:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise SusxError(
            f"--classes: {shown or repr(spec)} names no class of this support set",
            hint=f"use names or indices 0-{len(classes) - 1} (e.g. {classes[0]!r}), comma-separated or one a line in a file",
        )
    return picked


def page_paths(output: Path, pages: int) -> list[Path]:
    """``sheet.png`` for one page; ``sheet-001.png``, ``sheet-002.png``, ... for more."""
    if pages == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{i:03d}{output.suffix or '.png'}") for i in range(1, pages + 1)]


def source_and_model(options: dict[str, Any]) -> tuple[str, str | None]:
    """The curate source of a support set and, where it recorded one, the model that made or chose its images."""
    source = str(options.get("source") or "?")
    for where in (options, options.get("captions") or {}):
        if where.get("model"):
            tag = where.get("pretrained")
            return source, f"{where['model']}" + (f" ({tag})" if tag else "")
    index = (options.get("knn") or {}).get("index_name")
    return source, f"kNN index {index}" if index else None


def count_phrase(counts: list[int]) -> str:
    if not counts:
        return "no classes"
    low, high = min(counts), max(counts)
    per = f"{low}" if low == high else f"{low}-{high} (mean {sum(counts) / len(counts):.1f})"
    return f"{per} images per class; {sum(counts)} images, {len(counts)} classes"


def size_phrase(sizes: list[tuple[int, int]]) -> str:
    """'32x32 px', or the smallest and largest recorded image when they differ."""
    if not sizes:
        return "none"
    low, high = min(sizes, key=lambda s: s[0] * s[1]), max(sizes, key=lambda s: s[0] * s[1])
    return f"{low[0]}x{low[1]} px" if low == high else f"{low[0]}x{low[1]} to {high[0]}x{high[1]} px"


def contact_sheet(
    root: Path,
    output: Path,
    per_class: int = 8,
    classes: str | None = None,
    classes_per_page: int = CLASSES_PER_PAGE,
    thumb: int = plots.SHEET_THUMB,
) -> plots.SheetDescription:
    """PNG pages of a support folder: one row per class (label with its index, name and count on the left),
    up to ``per_class`` thumbnails each, at most ``classes_per_page`` rows a page. Columns fit the largest
    class shown. Every page is drawn before any is written, so a refused image leaves no sheet."""
    if per_class < 1:
        raise SusxError(f"--per-class must be at least 1, got {per_class}", hint="e.g. 8")
    if classes_per_page < 1:
        raise SusxError(f"--classes-per-page must be at least 1, got {classes_per_page}", hint="e.g. 50")
    fits = (MAX_SHEET_WIDTH - plots.SHEET_LABEL_WIDTH) // (thumb + plots.SHEET_GAP)
    if per_class > fits:
        warn(
            f"--per-class {per_class} would make a sheet wider than {MAX_SHEET_WIDTH} pixels; showing {fits} per class"
        )
        per_class = fits
    # Read as embed reads it: paths stay inside the folder, and each image is checked against its manifest.
    s = imagesets.from_support(root)
    names = s.classes or []
    items_by_class: dict[int, list[imagesets.ImageItem]] = {}
    for item in s.items:
        items_by_class.setdefault(item.label, []).append(item)
    chosen = pick_classes(names, classes)
    counts = [len(items_by_class.get(i, [])) for i in range(len(names))]
    columns = max(1, min(per_class, max(counts[i] for i in chosen)))
    recorded = support.read_support(root)
    source, model = source_and_model(recorded.provenance.get("options") or {})
    sizes = size_phrase([(int(r["width"]), int(r["height"])) for r in recorded.rows])
    pages = [chosen[i : i + classes_per_page] for i in range(0, len(chosen), classes_per_page)]
    paths = page_paths(output, len(pages))
    sheet = plots.SheetDescription(thumb, columns, plots.SHEET_RESAMPLE)
    # Each page goes to a temporary file beside its name; all are renamed into place only once every page
    # is drawn (leaving the stack), so a refused image leaves no page behind.
    with contextlib.ExitStack() as pending:
        for number, (page, path) in enumerate(zip(pages, paths, strict=True), start=1):
            shown = f"{len(chosen)} of {len(names)} classes" if classes else f"all {len(names)} classes"
            title = [
                f"support set {root.name}: source {source}" + (f", model {model}" if model else ""),
                count_phrase(counts),
                f"page {number} of {len(pages)}: {shown}"
                + ("" if classes else f", classes {page[0]}-{page[-1]}"),
                f"up to {columns} images per class shown; images {sizes}, drawn in {thumb} px cells "
                "(enlarged nearest-neighbour, shrunk bicubic)",
            ]
            rows = [
                plots.SheetRow(
                    [f"{ci}: {names[ci]}", f"{counts[ci]} image{'s' if counts[ci] != 1 else ''}"],
                    [imagesets.read_recorded(item) for item in items_by_class.get(ci, [])[:columns]],
                )
                for ci in page
            ]
            png, size, rows_top = plots.contact_sheet_png(title, rows, columns, thumb)
            pending.enter_context(common.atomic_path(path, suffix=".png")).write_bytes(png)
            sheet.pages.append(plots.SheetPage(str(path), title, [names[ci] for ci in page], size, rows_top))
    return sheet


def confusion_picture(path: Path, output: Path) -> Path:
    """Draw the confusion matrix (or, for many classes, the top confusions) of a predictions file."""
    from susx_cli.plots import confusion_figure

    preds = hdf5.read_predictions(path)
    pc = preds.per_class
    if pc is None:
        why = (
            "its queries have no labels"
            if not (preds.labels >= 0).any()
            else "it was written by an older susx, before per-class results"
        )
        raise SusxError(
            f"{path} holds no confusion data: {why}",
            hint="re-run susx predict --overwrite on labelled query features",
        )
    title = f"{preds.method}: confusion over {len(preds.classes)} classes, {int(pc.queries.sum())} queries"
    return confusion_figure(
        preds.classes,
        output,
        confusion=pc.confusion,
        top_confused=pc.top_confused,
        top_counts=pc.top_counts,
        title=title,
    )


def inspect(options: InspectOptions) -> InspectResult:
    """The description of ``options.path``, and the pictures the options ask for (their paths in
    ``outputs``)."""
    path, contact_sheet, confusion = options.path, options.contact_sheet, options.confusion
    description = describe(path)
    result = InspectResult([], description=description)
    if contact_sheet is not None:
        if not support.is_support_dir(path):
            raise SusxError(
                "--contact-sheet needs a support folder", hint="pass the -o folder of `susx curate`"
            )
        sheet = globals()["contact_sheet"](
            path,
            contact_sheet,
            per_class=options.per_class,
            classes=options.classes,
            classes_per_page=options.classes_per_page,
        )
        result.description["contact_sheet"] = sheet.to_json()
        result.outputs += [Path(page.path) for page in sheet.pages]
    if confusion is not None:
        if description.get("kind") != common.PREDICTIONS:
            raise SusxError("--confusion needs a predictions file", hint="pass the -o file of `susx predict`")
        result.outputs.append(confusion_picture(path, confusion))
    return result
