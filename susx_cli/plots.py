"""Figures: contact sheets (Pillow) and charts (matplotlib, optional extra `plots`).

Each drawing function writes one PNG and returns a small description of what it drew (titles, series,
page classes, sizes): text cannot be read back from pixels, so tests and `--json` read the description.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from susx_cli.artifacts import outputs
from susx_cli.artifacts.common import atomic_path
from susx_cli.errors import missing_extra


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise missing_extra("matplotlib", "plots") from exc
    return plt


def _save(fig, output: Path, kind: str) -> None:
    """Write ``fig`` as a PNG at ``output``, atomically, marked as susx's picture of ``kind``."""
    plt = _pyplot()
    with atomic_path(output, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=outputs.png_metadata(kind))
    plt.close(fig)


# ------------------------------------------------------------------ what every chart shares


@dataclass(frozen=True)
class MethodLook:
    """How a method is drawn everywhere: its spec's label, colour, marker and line style."""

    label: str
    color: str
    marker: str
    line_style: Any


UNREGISTERED = MethodLook("?", "#666666", ".", "-")  # a result naming a method this susx does not know


def method_look(method: str) -> MethodLook:
    """The method's look from its spec (method/registry.py); grey dots for a name it does not register."""
    from susx_cli.method import registry

    spec = registry.METHODS.get(method)
    if spec is None:
        return MethodLook(method, UNREGISTERED.color, UNREGISTERED.marker, UNREGISTERED.line_style)
    return MethodLook(spec.label, spec.color, spec.marker, spec.line_style)


def _renderer(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _wrap_to_width(fig, artist, width_px: float) -> None:
    """Re-wrap a text artist's lines (at spaces) until it is at most ``width_px`` wide."""
    import textwrap

    renderer = _renderer(fig)
    lines = artist.get_text().split("\n")
    chars = max(len(line) for line in lines)
    while artist.get_window_extent(renderer).width > width_px and chars > 12:
        chars = int(chars * 0.9)
        artist.set_text("\n".join(textwrap.fill(line, chars) for line in lines))


def _tight_with_title(fig, ax) -> None:
    """tight_layout, with the axes title wrapped to the axes' width (a title centred over axes pushed right
    by long tick labels would otherwise run off the figure)."""
    fig.tight_layout()
    _wrap_to_width(fig, ax.title, ax.get_window_extent(_renderer(fig)).width)
    fig.tight_layout()


def layout(fig) -> dict[str, Any]:
    """Where the figure's texts landed, in pixels of the saved PNG (origin bottom left): titles, axis labels,
    tick labels and legend entries, each with its role and axes, so that tests can check that nothing is
    clipped or overlapping without reading pixels."""
    renderer = _renderer(fig)
    boxes: list[dict[str, Any]] = []

    def add(role: str, artist, where: int = -1) -> None:
        if artist.get_visible() and artist.get_text():
            b = artist.get_window_extent(renderer)
            boxes.append(
                {"role": role, "axes": where, "text": artist.get_text(), "box": [b.x0, b.y0, b.x1, b.y1]}
            )

    for text in fig.texts:
        add(text.get_gid() or "note", text)
    for i, ax in enumerate(fig.axes):
        add("title", ax.title, i)
        add("xlabel", ax.xaxis.label, i)
        add("ylabel", ax.yaxis.label, i)
        for role, axis in (("xtick", ax.xaxis), ("ytick", ax.yaxis)):
            low, high = sorted(axis.get_view_interval())
            span = 1e-9 * max(abs(low), abs(high), 1.0)
            for loc, tick in zip(axis.get_ticklocs(), axis.get_ticklabels(), strict=True):
                if low - span <= loc <= high + span:  # a tick outside the view is not drawn
                    add(role, tick, i)
    for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        for text in legend.get_texts():
            add("legend", text)
    return {"size": [fig.get_figwidth() * fig.dpi, fig.get_figheight() * fig.dpi], "texts": boxes}


def legend_entries(legend) -> list[dict[str, Any]]:
    """(label, colour, marker) of each legend entry, read back from the drawn handles."""
    from matplotlib.colors import to_hex

    entries = []
    for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
        if hasattr(handle, "get_color") and not hasattr(handle, "get_facecolor"):
            color, marker = to_hex(handle.get_color()), handle.get_marker()
        else:
            color, marker = to_hex(handle.get_facecolor()), None
        entries.append({"label": text.get_text(), "color": color, "marker": marker})
    return entries


def _title_and_note(fig, title: str, note: str | None) -> float:
    """Draw the title (wrapped to the figure) and a boxed red note under it; return the figure fraction left
    above the panels, measured from what was drawn, so a long title never runs into a panel or off the page."""
    height = fig.get_figheight() * fig.dpi
    width = fig.get_figwidth() * fig.dpi
    suptitle = fig.text(0.5, 1 - 8 / height, title, ha="center", va="top", fontsize="large", gid="title")
    _wrap_to_width(fig, suptitle, width - 20)
    bottom = suptitle.get_window_extent(_renderer(fig)).y0
    if note:
        box = fig.text(
            0.5,
            (bottom - 10) / height,
            note,
            ha="center",
            va="top",
            fontsize=9,
            color="#b00020",
            bbox={"boxstyle": "round", "fc": "#fff3f3", "ec": "#b00020"},
        )
        _wrap_to_width(fig, box, width - 40)
        bottom = box.get_bbox_patch().get_window_extent(_renderer(fig)).y0
    return (bottom - 6) / height


# ------------------------------------------------------------------ calibration heat map


@dataclass(frozen=True)
class HeatmapDescription:
    title: str
    xlabel: str
    ylabel: str
    colorbar: str
    chosen: dict[str, float]  # alpha, gamma, beta and accuracy (%) of the marked point
    chosen_cell: tuple[int, int]  # (alpha index, gamma index)
    annotation: str
    xticks: list[str] = field(default_factory=list)
    yticks: list[str] = field(default_factory=list)
    layout: dict[str, Any] = field(default_factory=dict)


def _index_of(grid: list[float], value: float) -> int:
    """The grid point nearest ``value`` (the chosen point is a grid point; nearest guards float round trips)."""
    return int(np.argmin(np.abs(np.asarray(grid, dtype=float) - value)))


def tick_decimals(values: list[float]) -> int:
    """One number of decimals for every tick of an axis: the fewest (0-4) that keep the labels distinct and
    each within 1% of the smallest gap between ticks of its value."""
    shown = np.asarray(values, dtype=float)
    gaps = np.diff(np.sort(shown))
    tolerance = 0.01 * (gaps[gaps > 0].min() if (gaps > 0).any() else max(abs(shown).max(), 1.0))
    for decimals in range(5):
        rounded = np.round(shown, decimals)
        if len(set(rounded)) == len(set(shown)) and np.abs(rounded - shown).max() <= tolerance:
            return decimals
    return 4


def _sparse_ticks(values: list[float], most: int = 12) -> tuple[list[int], list[str]]:
    """At most ``most`` evenly spaced grid indices, labelled at one precision."""
    step = max(1, -(-len(values) // most))
    idx = list(range(0, len(values), step))
    decimals = tick_decimals([values[i] for i in idx])
    return idx, [f"{values[i]:.{decimals}f}" for i in idx]


def accuracy_heatmap(
    acc: np.ndarray,
    alphas: list[float],
    gammas: list[float],
    beta: float,
    output: Path,
    *,
    chosen: tuple[float, float] | None = None,
    method: str = "TIP-X",
    objective_on: str | None = None,
) -> HeatmapDescription:
    """Top-1 accuracy over the (alpha, gamma) grid at the chosen beta: acc (A, G) in [0, 1].

    Cells are drawn at grid indices with the grid values as tick labels (one precision per axis), so uneven
    grids (0.1, 1, 5) are not stretched. ``chosen`` = (alpha, gamma) of the calibration (default: the best
    cell) gets a marker and an annotation with alpha, gamma and its accuracy.
    """
    plt = _pyplot()
    acc = np.asarray(acc, dtype=float)
    if chosen is None:
        a, g = np.unravel_index(int(np.argmax(acc)), acc.shape)
    else:
        a, g = _index_of(alphas, chosen[0]), _index_of(gammas, chosen[1])
    best = {
        "alpha": float(alphas[a]),
        "gamma": float(gammas[g]),
        "beta": float(beta),
        "accuracy": round(100 * float(acc[a, g]), 4),
    }
    title = f"{method} calibration: top-1 accuracy over alpha and gamma at beta = {beta:.3g}"
    if objective_on:
        title += f"\n(measured on the {objective_on})"
    xlabel, ylabel = "gamma, KL term weight (unitless)", "alpha, cache term weight (unitless)"
    colorbar = "top-1 accuracy (%)"
    note = (
        f"chosen: alpha = {best['alpha']:.3g}, gamma = {best['gamma']:.3g}\ntop-1 = {best['accuracy']:.2f} %"
    )

    fig, ax = plt.subplots(figsize=(8, 5.5))
    im = ax.imshow(100 * acc, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label=colorbar)
    xticks, yticks = _sparse_ticks(gammas), _sparse_ticks(alphas)
    ax.set_xticks(*xticks, rotation=45 if len(xticks[0]) > 8 else 0)
    ax.set_yticks(*yticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    # A white ring around a red cross reads on every colour of the map.
    ax.plot(g, a, "o", markersize=18, markerfacecolor="none", markeredgecolor="white", markeredgewidth=2)
    ax.plot(g, a, "x", markersize=11, color="red", markeredgewidth=2.5)
    # The annotation points at the cell from the roomier side of the plot.
    dx = -0.25 if g > (len(gammas) - 1) / 2 else 0.25
    dy = -0.3 if a > (len(alphas) - 1) / 2 else 0.3
    ax.annotate(
        note,
        xy=(g, a),
        xycoords="data",
        xytext=(0.5 + dx, 0.5 + dy),
        textcoords="axes fraction",
        ha="center",
        va="center",
        fontsize=9,
        bbox={"boxstyle": "round", "fc": "white", "ec": "red", "alpha": 0.9},
        arrowprops={"arrowstyle": "->", "color": "red", "lw": 1.5},
    )
    _tight_with_title(fig, ax)
    drawn = layout(fig)
    _save(fig, output, outputs.HEATMAP)
    return HeatmapDescription(
        title, xlabel, ylabel, colorbar, best, (int(a), int(g)), note, xticks[1], yticks[1], drawn
    )


# ------------------------------------------------------------------ report charts

# The method is the colour and marker (its spec's); the calibration mode is the line style; the model, when
# a chart holds several, the marker's fill.
MODE_STYLES = {"val": "-", "loo": "--", "kfold": "-.", "fixed": (0, (3, 1, 1, 1, 1, 1)), "-": ":"}
_SPARE_STYLES = ((0, (5, 1)), (0, (1, 3)), (0, (5, 2, 1, 2)))
MODEL_FILLS = ("full", "none", "left", "bottom", "right", "top")


@dataclass(frozen=True)
class ShotSeries:
    """One few-shot curve of one dataset: top-1 (%) of (model, method, calibration mode) over shots."""

    model: str
    method: str
    mode: str
    label: str
    shots: list[int]  # ascending
    values: list[float]  # same length


@dataclass(frozen=True)
class ShotPanel:
    dataset: str
    series: list[ShotSeries]
    # (label, value, method): results of methods without support, drawn as horizontal lines
    baselines: list[tuple[str, float, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ChartDescription:
    kind: str  # shot-curves | bars
    title: str
    note: str | None
    panels: list[dict[str, Any]]  # per dataset: its title and series (label, colour, style, x, y)
    legend: list[dict[str, Any]] = field(default_factory=list)  # label, colour, marker as drawn
    layout: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _styles(keys: list[str], named: dict, spare: tuple) -> dict:
    out, extra = {}, iter(spare * (1 + len(keys)))
    for k in keys:
        out[k] = named[k] if k in named else next(extra)
    return out


def _figure_legend(fig, handles: dict, bottom_px: float):
    """One legend for every panel, under them; returns it."""
    labels = list(handles)
    ncol = min(3, max(1, len(labels)))
    return fig.legend(
        [handles[lab] for lab in labels],
        labels,
        loc="lower center",
        bbox_to_anchor=(0.5, bottom_px / (fig.get_figheight() * fig.dpi)),
        ncol=ncol,
        fontsize=8,
        frameon=False,
    )


def _legend_space(fig, legend) -> float:
    """The figure fraction the legend takes at the bottom, measured."""
    return (legend.get_window_extent(_renderer(fig)).y1 + 6) / (fig.get_figheight() * fig.dpi)


def shot_curves(
    panels: list[ShotPanel],
    output: Path,
    *,
    title: str,
    note: str | None = None,
    ylabel: str = "top-1 accuracy (%)",
) -> ChartDescription:
    """One panel per dataset: a curve per (model, method, mode) over shots, log2 x axis; colour and marker =
    method (its spec), line style = calibration mode, marker fill = model; zero-shot results as horizontal
    dotted lines in their method's colour."""
    plt = _pyplot()
    every = [s for p in panels for s in p.series]
    styles = _styles(sorted({s.mode for s in every}), MODE_STYLES, _SPARE_STYLES)
    models = sorted({s.model for s in every})
    fills = {m: MODEL_FILLS[i % len(MODEL_FILLS)] for i, m in enumerate(models)}
    cols = min(3, max(1, len(panels)))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 1, 3.6 * rows + 1.2), squeeze=False)
    described = []
    for i, panel in enumerate(panels):
        ax = axes[i // cols][i % cols]
        drawn = []
        for s in panel.series:
            look = method_look(s.method)
            ax.plot(
                s.shots,
                s.values,
                color=look.color,
                linestyle=styles[s.mode],
                marker=look.marker,
                fillstyle=fills[s.model],
                label=s.label,
                linewidth=1.8,
                markersize=6,
            )
            drawn.append(
                {
                    "label": s.label,
                    "method": s.method,
                    "mode": s.mode,
                    "color": look.color,
                    "marker": look.marker,
                    "linestyle": str(styles[s.mode]),
                    "x": list(s.shots),
                    "y": list(s.values),
                }
            )
        for label, value, method in panel.baselines:
            look = method_look(method)
            ax.axhline(value, color=look.color, linestyle=":", linewidth=1.5, label=label)
            drawn.append(
                {
                    "label": label,
                    "method": method,
                    "mode": "-",
                    "color": look.color,
                    "marker": None,
                    "linestyle": ":",
                    "x": [],
                    "y": [value],
                }
            )
        shots = sorted({k for s in panel.series for k in s.shots})
        if shots and shots[0] > 0:
            ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.minorticks_off()
        ax.set_xlabel("shots (labelled images per class)")
        ax.set_ylabel(ylabel)
        ax.set_title(panel.dataset, fontsize=10)
        ax.grid(alpha=0.3)
        described.append({"dataset": panel.dataset, "series": drawn})
    for j in range(len(panels), rows * cols):
        axes[j // cols][j % cols].axis("off")
    handles: dict[str, Any] = {}
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    legend = _figure_legend(fig, handles, 6)
    top = _title_and_note(fig, title, note)
    fig.tight_layout(rect=(0, _legend_space(fig, legend), 1, top))
    description = ChartDescription("shot-curves", title, note, described, legend_entries(legend), layout(fig))
    _save(fig, output, outputs.CHART)
    return description


def results_bars(
    datasets: list[str],
    series: list[tuple[str, str, list[float | None]]],
    output: Path,
    title: str = "top-1 accuracy (%)",
    note: str | None = None,
) -> ChartDescription:
    """One panel per dataset, one bar per series (label, method, value per dataset; None = no result), in
    its method's colour, its tick label in the same colour; one legend of the methods under the panels."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    cols = min(4, max(1, len(datasets)))
    rows = (len(datasets) + cols - 1) // cols
    names = 0.6 * 7 * max((len(label) for label, _, _ in series), default=0) / 72  # inches, vertical
    lines = 1 + len(title) // 60 + (2 if note else 0)  # title and note lines, wrapped at about 60 chars
    height = (2.8 + names) * rows + 0.9 + 0.3 * lines
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols + 1, height), squeeze=False)
    described = []
    for i, ds in enumerate(datasets):
        ax = axes[i // cols][i % cols]
        vals = [(label, method, v[i]) for label, method, v in series if v[i] is not None]
        xs = range(len(vals))
        ax.bar(xs, [v for _, _, v in vals], color=[method_look(m).color for _, m, _ in vals])
        for x, (_, _, v) in zip(xs, vals, strict=True):
            ax.text(x, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
        # Vertical labels never overlap their neighbours, however long; few short ones stay level.
        level = len(vals) <= 3 and all(len(label) <= 12 for label, _, _ in vals)
        ax.set_xticks(list(xs), [label for label, _, _ in vals], rotation=0 if level else 90, fontsize=7)
        for tick, (_, method, _) in zip(ax.get_xticklabels(), vals, strict=True):
            tick.set_color(method_look(method).color)
        ax.set_title(ds, fontsize=9)
        ax.set_ylim(0, max([v for _, _, v in vals] + [1]) * 1.15)
        described.append(
            {"dataset": ds, "series": [{"label": lab, "method": m, "y": [v]} for lab, m, v in vals]}
        )
    for j in range(len(datasets), rows * cols):
        axes[j // cols][j % cols].axis("off")
    methods = list(dict.fromkeys(m for _, m, _ in series))
    handles = {method_look(m).label: Patch(facecolor=method_look(m).color) for m in methods}
    legend = _figure_legend(fig, handles, 6)
    top = _title_and_note(fig, title, note)
    fig.tight_layout(rect=(0, _legend_space(fig, legend), 1, top))
    description = ChartDescription("bars", title, note, described, legend_entries(legend), layout(fig))
    _save(fig, output, outputs.CHART)
    return description


# ------------------------------------------------------------------ confusion

MATRIX_MAX_CLASSES = 60  # above this a matrix's names cannot be read: the top confusions are drawn instead
NAME_CHARS = 24  # longer class names end in an ellipsis on the axes


@dataclass(frozen=True)
class ConfusionDescription:
    view: str  # matrix | top-confusions
    title: str
    fontsize: float
    rotation: float
    labels: list[str]  # as drawn (truncated)
    layout: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def short_name(name: str, chars: int = NAME_CHARS) -> str:
    return name if len(name) <= chars else name[: chars - 1].rstrip() + "…"


def matrix_label_style(classes: int, longest: int) -> tuple[float, float, float]:
    """(cell side in inches, font size in points, x label rotation) for a matrix of ``classes`` rows whose
    longest drawn name has ``longest`` characters: cells shrink from 0.4 in towards 0.22 in as classes grow,
    the font fills 60% of a cell (6-10 pt), and the x names turn vertical once the longest (about 0.6 em a
    character) is wider than its cell."""
    cell = min(0.4, max(0.22, 8 / classes))
    font = round(min(10.0, max(6.0, 0.6 * 72 * cell)), 1)
    rotation = 0.0 if 0.6 * font * longest <= 72 * cell else 90.0
    return cell, font, rotation


def confusion_figure(
    classes: list[str],
    output: Path,
    *,
    confusion: np.ndarray | None = None,
    top_confused: np.ndarray | None = None,
    top_counts: np.ndarray | None = None,
    title: str = "confusion",
    pairs: int = 30,
) -> ConfusionDescription:
    """The confusion matrix (C, C) as a heat map of row-normalised counts (rows: true class) up to
    MATRIX_MAX_CLASSES classes; beyond, or when only each class's top confusions (C, k) are kept, a bar
    chart of the ``pairs`` most frequent (true -> predicted) confusions."""
    plt = _pyplot()
    if confusion is not None and len(classes) > MATRIX_MAX_CLASSES:
        from susx_cli.metrics import top_confusions_from_matrix

        top_confused, top_counts = top_confusions_from_matrix(confusion)
        confusion = None
    if confusion is not None:
        c = len(classes)
        rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
        labels = [short_name(name) for name in classes]
        cell, font, rotation = matrix_label_style(c, max(len(name) for name in labels))
        names = 0.6 * font * max(len(name) for name in labels) / 72  # inches the longest name takes
        fig, ax = plt.subplots(figsize=(cell * c + names + 2.5, cell * c + names + 1.5))
        im = ax.imshow(100 * rates, cmap="Blues", vmin=0, vmax=100, interpolation="nearest")
        fig.colorbar(im, ax=ax, label="% of the true class's queries", shrink=0.8)
        ax.set_xticks(range(c), labels, rotation=rotation, fontsize=font)
        ax.set_yticks(range(c), labels, fontsize=font)
        if c <= 20:
            for t in range(c):
                for p in range(c):
                    if confusion[t, p]:
                        ax.text(
                            p,
                            t,
                            str(confusion[t, p]),
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="white" if rates[t, p] > 0.5 else "black",
                        )
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        view = "matrix"
    else:
        true_idx, rank = np.nonzero(top_counts > 0)
        counts = top_counts[true_idx, rank]
        order = np.argsort(-counts, kind="stable")[:pairs]
        labels = [
            f"{short_name(classes[true_idx[i]])} → {short_name(classes[top_confused[true_idx[i], rank[i]]])}"
            for i in order
        ]
        fig, ax = plt.subplots(figsize=(9, 1.5 + 0.28 * max(len(order), 1)))
        ax.barh(range(len(order)), counts[order], color="#4c72b0")
        font, rotation = 8.0, 0.0
        ax.set_yticks(range(len(order)), labels, fontsize=font)
        ax.invert_yaxis()
        ax.set_xlabel("queries (true → predicted)")
        title += f" (the {len(order)} most frequent of each class's top confusions)"
        view = "top-confusions"
    ax.set_title(title)
    _tight_with_title(fig, ax)
    description = ConfusionDescription(view, title, font, rotation, labels, layout(fig))
    _save(fig, output, outputs.CONFUSION)
    return description


# ------------------------------------------------------------------ contact sheets (Pillow, no extra needed)

SHEET_THUMB = 128  # px: a 32 px image becomes 4 x 4 blocks per pixel, large enough to see what it shows
SHEET_LABEL_WIDTH = 220
SHEET_GAP = 4
SHEET_MIN_WIDTH = 640  # room for the title above a sheet of few columns
SHEET_RESAMPLE = "nearest-neighbour when enlarging (each pixel stays a visible block), bicubic when shrinking"
_TITLE_PX, _LABEL_PX, _CAPTION_PX = 15, 13, 11
SHEET_CAPTION_LINES = 3  # a caption longer than this, wrapped to its cell, ends in an ellipsis


@dataclass(frozen=True)
class SheetRow:
    """One row of a contact sheet: label lines drawn on the left, its encoded images left to right, and
    under each image its caption lines (its key first, so that a user can name the image to leave out)."""

    label: list[str]
    images: list[bytes]
    captions: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class SheetPage:
    path: str
    title: list[str]  # lines, before wrapping to the sheet's width
    classes: list[str]  # the row labels' first lines
    size: tuple[int, int]  # (width, height) px
    rows_top: int  # y of the first row; row r starts at rows_top + r * row_height
    row_height: int  # thumb + the caption lines' height + SHEET_GAP
    keys: list[list[str]] = field(default_factory=list)  # per row, the key printed under each image


@dataclass
class SheetDescription:
    thumb: int  # side of a thumbnail cell, px
    columns: int  # thumbnails per class row
    resample: str
    pages: list[SheetPage] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _font(px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except (TypeError, ValueError, OSError):  # Pillow < 10.1, or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(text: str, width: float, measure) -> list[str]:
    """Greedy word wrap to ``width`` px; a word longer than a line is cut to fit."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and measure(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
            continue
        while measure(word) > width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and measure(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines


def fit_thumbnail(image, side: int):
    """``image`` scaled to fit a side x side cell, aspect ratio kept (see SHEET_RESAMPLE)."""
    from PIL import Image

    w, h = image.size
    scale = side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if scale >= 1:
        return image.resize(size, Image.NEAREST)
    return image.resize(size, Image.BICUBIC, reducing_gap=3.0)


def _caption_lines(caption: list[str], width: float, measure) -> list[str]:
    """Caption lines wrapped to a cell's width (a path breaks after its '/'), at most SHEET_CAPTION_LINES
    (the last cut with '…')."""
    parts = [p for text in caption for p in re.split(r"(?<=/)(?=.)", text)]
    lines = [w for text in parts for w in _wrap(text, width, measure)]
    if len(lines) <= SHEET_CAPTION_LINES:
        return lines
    last = lines[SHEET_CAPTION_LINES - 1]
    while last and measure(last + "…") > width:
        last = last[:-1]
    return [*lines[: SHEET_CAPTION_LINES - 1], last + "…"]


def contact_sheet_png(
    title: list[str], rows: list[SheetRow], columns: int, thumb: int = SHEET_THUMB
) -> tuple[bytes, tuple[int, int], int, int]:
    """A white PNG: the title lines on top, then one row per SheetRow (label left, thumbnails centred in
    thumb x thumb cells from x = SHEET_LABEL_WIDTH, each image's caption under it). An image that cannot
    be decoded leaves a grey cell. Returns (png bytes, (width, height), y of the first row, row height)."""
    from PIL import Image, ImageDraw

    title_font, label_font, caption_font = _font(_TITLE_PX), _font(_LABEL_PX), _font(_CAPTION_PX)
    cell = thumb + SHEET_GAP
    width = max(SHEET_MIN_WIDTH, SHEET_LABEL_WIDTH + columns * cell)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    lines = [w for line in title for w in _wrap(line, width - 16, lambda t: measure(t, font=title_font))]
    line_h, caption_h = _TITLE_PX + 6, _CAPTION_PX + 3
    captions = [
        [_caption_lines(c, thumb - 2, lambda t: measure(t, font=caption_font)) for c in row.captions]
        for row in rows
    ]
    row_h = cell + caption_h * max((len(c) for row in captions for c in row), default=0)
    top = 8 + len(lines) * line_h + 8
    sheet = Image.new("RGB", (width, top + len(rows) * row_h + SHEET_GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(lines):
        draw.text((8, 8 + i * line_h), line, fill="black", font=title_font)
    draw.line([(0, top - 3), (width, top - 3)], fill="#999999")
    for r, row in enumerate(rows):
        y = top + SHEET_GAP + r * row_h
        label = [
            w
            for text in row.label
            for w in _wrap(text, SHEET_LABEL_WIDTH - 12, lambda t: measure(t, font=label_font))
        ]
        label = label[: thumb // (_LABEL_PX + 4)]
        y0 = y + (thumb - len(label) * (_LABEL_PX + 4)) // 2
        for k, text in enumerate(label):
            draw.text((6, y0 + k * (_LABEL_PX + 4)), text, fill="black", font=label_font)
        for c, data in enumerate(row.images):
            x = SHEET_LABEL_WIDTH + c * cell
            for k, text in enumerate(captions[r][c] if c < len(captions[r]) else []):
                draw.text((x + 1, y + thumb + 2 + k * caption_h), text, fill="#333333", font=caption_font)
            try:
                with Image.open(io.BytesIO(data)) as img:
                    tile = fit_thumbnail(img.convert("RGB"), thumb)
            except (OSError, ValueError, Image.DecompressionBombError):
                draw.rectangle([x, y, x + thumb - 1, y + thumb - 1], fill="#cccccc")
                continue
            sheet.paste(tile, (x + (thumb - tile.width) // 2, y + (thumb - tile.height) // 2))
    from PIL.PngImagePlugin import PngInfo

    marks = PngInfo()
    for key, value in outputs.png_metadata(outputs.CONTACT_SHEET).items():
        marks.add_text(key, value)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", pnginfo=marks)
    return buf.getvalue(), sheet.size, top + SHEET_GAP, row_h
