"""TIP-X: Tip-Adapter plus the KL term, Z + alpha A L + gamma (-K') L (docs/METHOD.md). It shares Tip-Adapter's
alpha and beta (same flags, same meaning), its state and its vectorised search."""

from __future__ import annotations

from susx_cli.method import spec
from susx_cli.method.methods import tip_adapter

GAMMA = spec.Hyperparameter(
    "gamma",
    0.1,
    tuple(spec.reference_grid(0.1, 30.0, 50)),
    "--gamma",
    "weight of the KL (signature) term",
    low=0.0,
    high=1e6,
)


def search(text_weights, support: spec.Support, task: spec.SearchTask, **settings) -> spec.Choice:
    return tip_adapter.grid_search(text_weights, support, task, task.grid, **settings)


SPEC = spec.MethodSpec(
    name="tip-x",
    label="TIP-X",
    color="#dd8452",
    marker="s",
    line_style="--",
    needs_support=True,
    fit=tip_adapter.fit,
    logits=tip_adapter.logits,
    modes=("val", "loo", "kfold", "fixed"),
    hyperparameters=(tip_adapter.ALPHA, tip_adapter.BETA, GAMMA),
    settings=("tau", "normalize"),
    search=search,
    in_paper=True,
    heatmap=("alpha", "gamma"),
)
