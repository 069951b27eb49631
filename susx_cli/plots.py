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
