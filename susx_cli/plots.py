"""Figures (matplotlib, optional extra `plots`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def accuracy_heatmap(acc: np.ndarray, alphas: list[float], gammas: list[float], beta: float, output: Path) -> Path:
    """Top-1 accuracy over (alpha, gamma) at the chosen beta: acc (A, G) in [0, 1]."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    im = ax.imshow(
        100 * acc, origin="lower", aspect="auto", cmap="viridis",
        extent=(min(gammas), max(gammas), min(alphas), max(alphas)),
    )
    fig.colorbar(im, ax=ax, label="top-1 (%)")
    ax.set_xlabel("gamma (KL term weight)")
    ax.set_ylabel("alpha (cache term weight)")
    ax.set_title(f"TIP-X calibration accuracy at beta = {beta:.3g}")
    best = np.unravel_index(int(np.argmax(acc)), acc.shape)
    ax.plot(gammas[best[1]], alphas[best[0]], "r+", markersize=14)
    with atomic_path(output, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return output


METHOD_COLORS = {"zero-shot": "#9e9e9e", "tip-adapter": "#4c72b0", "tip-x": "#dd8452"}


def results_bars(datasets: list[str], series: list[tuple[str, str, list[float | None]]], output: Path,
                 title: str = "top-1 accuracy (%)") -> Path:
    """One panel per dataset, one bar per series (label, method, value per dataset; None = no result)."""
    plt = _pyplot()
    cols = min(4, max(1, len(datasets)))
    rows = (len(datasets) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols + 1, 2.8 * rows + 0.6), squeeze=False)
    for i, ds in enumerate(datasets):
        ax = axes[i // cols][i % cols]
        vals = [(label, method, v[i]) for label, method, v in series if v[i] is not None]
        xs = range(len(vals))
        ax.bar(xs, [v for _, _, v in vals], color=[METHOD_COLORS.get(m, "#55a868") for _, m, _ in vals])
        for x, (_, _, v) in zip(xs, vals, strict=True):
            ax.text(x, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(xs), [label for label, _, _ in vals], rotation=35, ha="right", fontsize=7)
        ax.set_title(ds, fontsize=9)
        ax.set_ylim(0, max([v for _, _, v in vals] + [1]) * 1.15)
    for j in range(len(datasets), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(output, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return output


def confusion_figure(classes: list[str], output: Path, *, confusion: np.ndarray | None = None,
                     top_confused: np.ndarray | None = None, top_counts: np.ndarray | None = None,
                     title: str = "confusion", pairs: int = 30) -> Path:
    """The confusion matrix (C, C) as a heat map of row-normalised counts (rows: true class), or, for a
    large C where only each class's top confusions (C, k) are kept, a bar chart of the ``pairs`` most
    frequent (true -> predicted) confusions."""
    plt = _pyplot()
    if confusion is not None:
        c = len(classes)
        rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
        side = min(4 + 0.25 * c, 30)
        fig, ax = plt.subplots(figsize=(side + 1.5, side))
        im = ax.imshow(100 * rates, cmap="Blues", vmin=0, vmax=100, interpolation="nearest")
        fig.colorbar(im, ax=ax, label="% of the true class's queries")
        if c <= 60:  # beyond this, names overlap: the axes keep indices
            font = 8 if c <= 30 else 5
            ax.set_xticks(range(c), classes, rotation=90, fontsize=font)
            ax.set_yticks(range(c), classes, fontsize=font)
        if c <= 20:
            for t in range(c):
                for p in range(c):
                    if confusion[t, p]:
                        ax.text(p, t, str(confusion[t, p]), ha="center", va="center", fontsize=7,
                                color="white" if rates[t, p] > 0.5 else "black")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    else:
        true_idx, rank = np.nonzero(top_counts > 0)
        counts = top_counts[true_idx, rank]
        order = np.argsort(-counts, kind="stable")[:pairs]
        labels = [f"{classes[true_idx[i]]} → {classes[top_confused[true_idx[i], rank[i]]]}"[:60] for i in order]
        fig, ax = plt.subplots(figsize=(9, 1 + 0.28 * max(len(order), 1)))
        ax.barh(range(len(order)), counts[order], color="#4c72b0")
        ax.set_yticks(range(len(order)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("queries (true → predicted)")
        title += f" (the {len(order)} most frequent of each class's top confusions)"
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(output, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return output
