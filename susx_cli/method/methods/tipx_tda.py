"""TIP-X + TDA: the SuS support set as TIP-X's static cache, with its calibrated alpha, beta, gamma (the
same flags, modes and search as TIP-X), and TDA's caches over the query stream added on top
(docs/METHOD.md "TIP-X + TDA"; tda.add_tda_terms). Admission reads the zero-shot quantities only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from susx_cli.method import spec
from susx_cli.method.methods import tda, tip_adapter, tipx


@dataclass(frozen=True)
class State:
    static: Any  # the static method's state
    logits: Any  # the static method's logits function
    params: Any  # method.tda.TdaParams


def combine(static_fit, static_logits):
    """``fit`` of ``static`` + TDA: the static state from the calibrated values, TDA's from the stream ones."""

    def fit(text_weights, support, hyperparameters: dict[str, float], **settings) -> State:
        static, stream = tda.split_values(hyperparameters)
        state = static_fit(text_weights, support, static, **settings)
        return State(state, static_logits, tda.tda_params(stream, settings.get("logit_scale", 100.0)))

    return fit


def logits(state: State, queries):
    """(n, C): the static logits plus TDA's cache terms, queries (n, D) arriving in row order."""
    import torch

    from susx_cli.method.tda import add_tda_terms

    order = torch.arange(queries.shape[0])
    base = state.logits(state.static, queries).cpu()  # the static part on the method's device, TDA on the CPU
    return add_tda_terms(base, queries.cpu(), state.static.W.cpu(), order, state.params)


SPEC = spec.MethodSpec(
    name="tip-x+tda",
    label="TIP-X + TDA",
    color="#c44e52",
    marker="*",
    line_style="-.",
    needs_support=True,
    fit=combine(tip_adapter.fit, tip_adapter.logits),
    logits=logits,
    online=True,
    modes=tipx.SPEC.modes,
    hyperparameters=tipx.SPEC.hyperparameters,
    settings=tipx.SPEC.settings,
    search=tipx.search,
    heatmap=tipx.SPEC.heatmap,
    group="test-time",
    stream=tda.STREAM,
    presets=tda.PRESETS,
    preset=tda.preset,
    baseline="tip-x",
)
