"""`inspect`: describe any artifact; draw a contact sheet of a support folder."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from susx_cli import classnames, imagesets, plots
from susx_cli.artifacts import common, hdf5, outputs, support
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
    for path in paths:
        outputs.claim(path, outputs.CONTACT_SHEET, option="--contact-sheet")
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
            shown_items = [items_by_class.get(ci, [])[:columns] for ci in page]
            rows = [
                plots.SheetRow(
                    [f"{ci}: {names[ci]}", f"{counts[ci]} image{'s' if counts[ci] != 1 else ''}"],
                    [imagesets.read_recorded(item) for item in items],
                    [[item.key] for item in items],
                )
                for ci, items in zip(page, shown_items, strict=True)
            ]
            png, size, rows_top, row_height = plots.contact_sheet_png(title, rows, columns, thumb)
            pending.enter_context(common.atomic_path(path, suffix=".png")).write_bytes(png)
            keys = [[item.key for item in items] for items in shown_items]
            sheet.pages.append(
                plots.SheetPage(
                    str(path), title, [names[ci] for ci in page], size, rows_top, row_height, keys
                )
            )
    return sheet


def confusion_picture(path: Path, output: Path) -> plots.ConfusionDescription:
    """Draw the confusion matrix (or, for many classes, the top confusions) of a predictions file."""
    preds = hdf5.read_predictions(path)
    outputs.claim(output, outputs.CONFUSION, option="--confusion")
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
    label = plots.method_look(preds.method).label
    title = f"{label}: confusion over {len(preds.classes)} classes, {int(pc.queries.sum())} queries"
    return plots.confusion_figure(
        preds.classes,
        output,
        confusion=pc.confusion,
        top_confused=pc.top_confused,
        top_counts=pc.top_counts,
        title=title,
    )


def inspect(options: InspectOptions) -> InspectResult:
    """The description of ``options.path``, and the pictures the options ask for (their paths in
    ``outputs``); with ``influence``, the support images ranked by their effect (``support_influence``)."""
    path, contact_sheet, confusion = options.path, options.contact_sheet, options.confusion
    if options.influence:
        # The worst images' sheet is an output like any other: never an input, never a user's file.
        inputs = [path, options.text, options.calibration, options.support_folder]
        outputs.check_paths(inputs, [("--contact-sheet", contact_sheet)])
        if contact_sheet is not None:
            outputs.claim(contact_sheet, outputs.CONTACT_SHEET, option="--contact-sheet")
        return support_influence(
            path,
            options.text,
            calibration=options.calibration,
            sheet=contact_sheet,
            support_folder=options.support_folder,
            worst=options.worst,
        )
    outputs.check_paths([path], [("--contact-sheet", contact_sheet), ("--confusion", confusion)])
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
        result.description["confusion"] = confusion_picture(path, confusion).to_json()
        result.outputs.append(confusion)
    return result


# ------------------------------------------------------------------ support-image influence

CACHE_HYPERPARAMETERS = {"alpha", "beta", "gamma"}  # a cache method's (Tip-Adapter, TIP-X)
DEFAULT_CACHE_METHOD = "tip-x"  # its registry defaults score a support set given no calibration
SHEET_COLUMNS = 8


def cache_method(cal) -> tuple[Any, dict[str, float], dict[str, Any], str]:
    """(spec, hyperparameters, logit settings, where they came from) of the calibration, or the default
    cache method's defaults. A method without a cache over the support set has no leave-one-out influence."""
    from susx_cli.method import registry

    if cal is None:
        spec = registry.get(DEFAULT_CACHE_METHOD)
        return spec, spec.defaults(), {"logit_scale": 100.0}, f"{spec.label} defaults"
    spec = registry.get(cal.method)
    names = {h.name for h in spec.hyperparameters}
    if not ({"alpha", "beta"} <= names <= CACHE_HYPERPARAMETERS):
        raise SusxError(
            f"--influence scores the support images of a cache method; {cal.path} calibrates {spec.label}",
            hint="pass a Tip-Adapter or TIP-X calibration, or none for the TIP-X defaults",
        )
    settings = {k: v for k, v in cal.settings.items() if k in spec.settings}
    settings.update(logit_scale=cal.logit_scale, logit_bias=cal.logit_bias)
    return spec, dict(cal.hyperparameters), settings, f"{cal.path} (mode {cal.mode})"


def reachable_support_folder(features: hdf5.FeatureSet, given: Path | None) -> Path | None:
    """The support folder whose images the feature file's keys name: ``given``, else the support set its
    provenance records (as written, then beside the feature file). None when no such folder is here."""
    recorded = [
        Path(i["path"])
        for i in features.provenance.get("inputs", [])
        if i.get("kind") == common.SUPPORT_SET and i.get("path")
    ]
    beside = [features.path.parent / p for p in recorded if features.path and not p.is_absolute()]
    for folder in [given] if given is not None else [*recorded, *beside]:
        if support.is_support_dir(folder):
            return folder
    if given is not None:
        raise SusxError(
            f"--support-folder {given} is not a susx support set", hint="pass the -o folder of curate"
        )
    return None


def influence_sheet(
    folder: Path, ranked: list[dict[str, Any]], output: Path, title: list[str]
) -> plots.SheetDescription:
    """The ranked images (worst first), SHEET_COLUMNS a row, each captioned with its key and its effect."""
    by_key = {item.key: item for item in imagesets.from_support(folder).items}
    missing = [r["key"] for r in ranked if r["key"] not in by_key]
    if missing:
        raise SusxError(
            f"{folder} has no image {missing[0]!r} of the feature file",
            hint="pass the support folder these features were embedded from with --support-folder",
        )
    rows = []
    for start in range(0, len(ranked), SHEET_COLUMNS):
        part = ranked[start : start + SHEET_COLUMNS]
        rows.append(
            plots.SheetRow(
                [f"worst {start + 1}-{start + len(part)}"],
                [imagesets.read_recorded(by_key[r["key"]]) for r in part],
                [[r["key"], f"{r['class']}: {100 * r['delta']:+.1f} pts"] for r in part],
            )
        )
    columns = max(1, min(SHEET_COLUMNS, len(ranked)))
    png, size, rows_top, row_height = plots.contact_sheet_png(title, rows, columns)
    with common.atomic_path(output, suffix=".png") as tmp:
        tmp.write_bytes(png)
    keys = [[r["key"] for r in ranked[s : s + SHEET_COLUMNS]] for s in range(0, len(ranked), SHEET_COLUMNS)]
    page = plots.SheetPage(
        str(output), title, [row.label[0] for row in rows], size, rows_top, row_height, keys
    )
    return plots.SheetDescription(plots.SHEET_THUMB, columns, plots.SHEET_RESAMPLE, [page])


def support_influence(
    support_path: Path,
    text_path: Path,
    *,
    calibration: Path | None = None,
    sheet: Path | None = None,
    support_folder: Path | None = None,
    worst: int = 24,
    device: str | None = None,
) -> InspectResult:
    """Each support image's effect on its class's leave-one-out accuracy (method/influence.py), worst
    first; with ``sheet``, the first ``worst`` of them drawn with their keys."""
    import torch

    from susx_cli import runtime
    from susx_cli.method.influence import support_influence as influence
    from susx_cli.stages.inputs import as_float64, load_method_inputs

    if worst < 1:
        raise SusxError(f"--worst must be at least 1, got {worst}", hint="e.g. 24")
    inputs = load_method_inputs(text_path, support_path, calibration_path=calibration)
    spec, values, settings, source = cache_method(inputs.calibration)
    dev = runtime.method_device(device)
    sup = inputs.support
    labels = torch.from_numpy(sup.labels).to(dev)
    result = influence(
        as_float64(sup.features, dev), labels, as_float64(inputs.text.weights, dev), **values, **settings
    )
    delta, correct, peers = (t.cpu().numpy() for t in (result.delta, result.correct, result.peers))
    order = sorted(range(len(delta)), key=lambda j: (-delta[j], j))
    ranked = [
        {
            "key": sup.keys[j],
            "class": sup.classes[int(sup.labels[j])],
            "delta": float(delta[j]),
            "peers": int(peers[j]),
            "correct": bool(correct[j]),
        }
        for j in order
    ]
    hurting = [r for r in ranked if r["delta"] > 0]
    description = {
        "kind": "support-influence",
        "support": str(support_path),
        "method": spec.name,
        "hyperparameters": values,
        "settings": settings,
        "from": source,
        "leave_one_out_top1": float(correct.mean()),
        "hurting": len(hurting),
        "images": ranked,
    }
    out = InspectResult([], description=description)
    if sheet is not None:
        folder = reachable_support_folder(sup, support_folder)
        if folder is None:
            raise SusxError(
                f"the support folder of {support_path} is not reachable from here",
                hint="pass it with --support-folder",
            )
        shown = ranked[:worst]
        title = [
            f"support set {folder.name}: the {len(shown)} images whose removal most raises their class's "
            f"leave-one-out top-1 ({spec.label}, {source})",
            f"{len(hurting)} of {len(ranked)} images lower it; caption: key, class and the change in "
            "points when the image is left out",
        ]
        drawn = influence_sheet(folder, shown, sheet, title)
        description["contact_sheet"] = drawn.to_json()
        out.outputs.append(sheet)
    return out
