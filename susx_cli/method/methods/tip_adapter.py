"""Tip-Adapter: zero-shot plus the cache term, Z + alpha A L with A = exp(-beta (1 - f F^T)) (docs/METHOD.md).
TIP-X without the KL term; method/tipx.py holds the math, method/search.py the vectorised search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from susx_cli.method import spec

ALPHA = spec.Hyperparameter(
    "alpha",
    1.0,
    tuple(spec.reference_grid(0.1, 50.0, 20)),
    "--alpha",
    "weight of the cache (support) term",
    low=0.0,
    high=1e6,
)
BETA = spec.Hyperparameter(
    "beta",
    1.0,
    tuple(spec.reference_grid(1.0, 50.0, 200)),
    "--beta",
    "sharpness of the cache affinities",
    low=0.0,
    high=1e4,
)


@dataclass(frozen=True)
class State:
    W: Any  # (C, D)
    F: Any  # (N, D)
    y: Any  # (N,)
    values: dict[str, float]
    settings: dict[str, Any]


def fit(text_weights, support: spec.Support, hyperparameters: dict[str, float], **settings) -> State:
    """Nothing to estimate: the state is the support set with the hyperparameters."""
    return State(text_weights, support.features, support.labels, dict(hyperparameters), settings)


def logits(state: State, queries):
    """(n, C): Z + alpha A L (+ gamma (-K') L for TIP-X), in query chunks (method/tipx.py)."""
    from susx_cli.method import tipx

    options: dict[str, Any] = {**state.values, **state.settings}  # tipx.logits' keywords
    return tipx.logits(queries, state.W, state.F, state.y, **options)


def search(text_weights, support: spec.Support, task: spec.SearchTask, **settings) -> spec.Choice:
    """The vectorised search of method/search.py (method/kfold.py for mode kfold) with gamma = [0]."""
    return grid_search(text_weights, support, task, {**task.grid, "gamma": [0.0]}, **settings)


def grid_search(
    text_weights,
    support,
    task: spec.SearchTask,
    axes: dict[str, list[float]],
    *,
    normalize: bool = False,
    **settings,
) -> spec.Choice:
    """(alpha, beta, gamma) counts (A, B, G) on ``axes``; the choice among the task's own hyperparameters."""
    from susx_cli.errors import SusxError
    from susx_cli.method import kfold
    from susx_cli.method.search import Grid
    from susx_cli.method.search import grid_search as vectorised

    grid = Grid(axes["alpha"], axes["beta"], axes["gamma"])
    F, y = support.features, support.labels
    opts = dict(normalize=normalize, progress=task.progress, **settings)
    if task.mode == "kfold":
        result = kfold.grid_search(F, y, text_weights, grid, task.split, **opts)
    elif task.mode == "val":
        q = task.validation()
        result = vectorised(q.features, q.labels, F, y, text_weights, grid, exclude_self=False, **opts)
    else:
        if F.shape[0] < 2:
            raise SusxError("leave-one-out needs at least 2 support images", hint="curate more images")
        result = vectorised(F, y, F, y, text_weights, grid, exclude_self=True, **opts)
    values = {"alpha": result.alpha, "beta": result.beta, "gamma": result.gamma}
    counts = result.counts if "gamma" in task.grid else result.counts[:, :, 0]
    return spec.Choice({k: values[k] for k in task.grid}, result.correct, result.total, counts)


SPEC = spec.MethodSpec(
    name="tip-adapter",
    label="Tip-Adapter",
    color="#4c72b0",
    marker="o",
    line_style="-",
    needs_support=True,
    fit=fit,
    logits=logits,
    modes=("val", "loo", "kfold", "fixed"),
    hyperparameters=(ALPHA, BETA),
    settings=("normalize",),
    search=search,
    in_paper=True,
)
