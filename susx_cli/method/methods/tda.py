"""TDA: zero-shot logits plus the positive and negative cache terms of the query stream read so far
(docs/METHOD.md "Test-time methods"); method/tda.py holds the math. No support set and no calibration:
alpha+ and beta+ are stream values, (2, 5) on every dataset unless ``--tda-preset paper`` picks TDA's
per-dataset values. ``online``: ``logits`` walks the queries in the order it is given them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from susx_cli.errors import SusxError
from susx_cli.method import spec

TDA_ALPHA = spec.Hyperparameter(
    "tda_alpha", 2.0, (), "--tda-alpha", "weight alpha+ of TDA's positive cache", low=0.0, high=1e6
)
TDA_BETA = spec.Hyperparameter(
    "tda_beta", 5.0, (), "--tda-beta", "sharpness beta+ of TDA's positive cache", low=0.0, high=1e4
)
STREAM = (TDA_ALPHA, TDA_BETA)
PRESETS = ("default", "paper")


def preset(name: str, dataset: str | None) -> dict[str, float]:
    """``paper``: the (alpha+, beta+) TDA's authors used on ``dataset`` (tuned on its test labels)."""
    from susx_cli.method import tda

    if dataset is None:
        raise SusxError("--tda-preset paper needs the dataset", hint="pass --dataset ID, e.g. --dataset dtd")
    params = tda.paper_params(dataset)
    return {TDA_ALPHA.name: params.alpha_pos, TDA_BETA.name: params.beta_pos}


def tda_params(values: dict[str, float], logit_scale: float):
    """TDA's constants with the stream values ``values`` (their defaults where absent)."""
    from susx_cli.method import tda

    alpha = values.get(TDA_ALPHA.name, TDA_ALPHA.default)
    beta = values.get(TDA_BETA.name, TDA_BETA.default)
    return tda.TdaParams(alpha_pos=alpha, beta_pos=beta, scale=logit_scale)


def split_values(hyperparameters: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """(the static method's values, TDA's stream values) of a combined method's hyperparameters."""
    names = {h.name for h in STREAM}
    static = {k: v for k, v in hyperparameters.items() if k not in names}
    return static, {k: v for k, v in hyperparameters.items() if k in names}


@dataclass(frozen=True)
class State:
    W: Any  # (C, D)
    params: Any  # method.tda.TdaParams


def fit(
    text_weights, support, hyperparameters: dict[str, float], *, logit_scale: float = 100.0, **_
) -> State:
    return State(text_weights, tda_params(hyperparameters, logit_scale))


def logits(state: State, queries):
    """(n, C) for queries (n, D) arriving in row order."""
    import torch

    from susx_cli.method import tda

    order = torch.arange(queries.shape[0], device=queries.device)
    return tda.tda_logits(queries, state.W, order, state.params)


SPEC = spec.MethodSpec(
    name="tda",
    label="TDA",
    color="#8172b3",
    marker="^",
    line_style="-.",
    needs_support=False,
    fit=fit,
    logits=logits,
    online=True,
    group="test-time",
    stream=STREAM,
    presets=PRESETS,
    preset=preset,
    baseline="zero-shot",
)
