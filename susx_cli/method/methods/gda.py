"""GDA: zero-shot plus alpha times a linear head from class means and a shrinkage precision of the support
features (docs/METHOD.md); method/gda.py holds the math. alpha is a different quantity from TIP-X's, so it has
its own flag. No leave-one-out: k-fold is its name-only mode (folds over images, never over views).

Where the support set keeps its augmented views (``embed --keep-views``), the head is fitted on every view
row, as GDA's paper does (N*K rows; one image per class then suffices); otherwise on one row per image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from susx_cli.method import spec

ALPHA = spec.Hyperparameter(
    "alpha",
    0.1,
    (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0),
    "--gda-alpha",
    "weight of the GDA term",
    low=0.0,
    high=1e6,
)


@dataclass(frozen=True)
class State:
    W: Any  # (C, D)
    head: Any  # gda.GDAHead
    alpha: float
    logit_scale: float
    logit_bias: float


def fit(
    text_weights,
    support: spec.Support,
    hyperparameters: dict[str, float],
    *,
    logit_scale: float = 100.0,
    logit_bias: float = 0.0,
) -> State:
    """The head re-fitted from the support's view rows, or its features without views (deterministic,
    float64)."""
    from susx_cli.method import gda

    head = gda.fit_gda(*support.view_rows(), text_weights.shape[0])
    return State(text_weights, head, hyperparameters["alpha"], logit_scale, logit_bias)


def logits(state: State, queries):
    from susx_cli.method import gda

    return gda.gda_logits(queries, state.W, state.head, state.alpha, state.logit_scale, state.logit_bias)


def check_support(text_weights, support: spec.Support) -> None:
    from susx_cli.method import gda

    gda.check_support(*support.view_rows(), text_weights.shape[0])


def search(
    text_weights,
    support: spec.Support,
    task: spec.SearchTask,
    *,
    logit_scale: float = 100.0,
    logit_bias: float = 0.0,
) -> spec.Choice:
    """alpha on the validation split (head from the whole support set) or by k-fold."""
    from susx_cli.method import gda, kfold

    alphas = task.grid["alpha"]
    if task.mode == "val":
        head = gda.fit_gda(*support.view_rows(), text_weights.shape[0])
        q = task.validation()
        choice = gda.choose_alpha(
            q.features, q.labels, text_weights, head, alphas, logit_scale, logit_bias=logit_bias
        )
    else:
        choice = kfold.gda_alpha(
            support.features,
            support.labels,
            text_weights,
            task.split,
            alphas,
            logit_scale,
            logit_bias=logit_bias,
            views=support.views,
        )
    return spec.Choice({"alpha": choice.alpha}, choice.correct, choice.total, choice.counts)


SPEC = spec.MethodSpec(
    name="gda",
    label="GDA",
    color="#55a868",
    marker="D",
    line_style=":",
    needs_support=True,
    fit=fit,
    logits=logits,
    modes=("val", "kfold", "fixed"),
    hyperparameters=(ALPHA,),
    search=search,
    check_support=check_support,
    min_shots=2,
    record={
        "means": "per-class mean of the support features",
        "covariance": "pooled within-class, X^T X / (N - 1), over every view row where views are kept",
        "estimator": "shrinkage-pinv",
        "formula": "P = D * pinv((N - 1) * Sigma + trace(Sigma) * I_D)",
        "dtype": "float64",
    },
)
