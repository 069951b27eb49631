"""DMN-ZS, single view with a fixed gamma (docs/METHOD.md); method/dmn.py holds the math. Its scores
p + gamma p_mem are a mixture of two distributions; ``logits`` returns the log of the normalised mixture,
so that argmax, top-5 and the calibration metrics read it like any method's logits (gamma 0: log p, the
zero-shot prediction)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from susx_cli.method import spec

DMN_GAMMA = spec.Hyperparameter(
    "dmn_gamma", 1.0, (), "--dmn-gamma", "weight gamma of DMN's memory probabilities", low=0.0, high=1e6
)


@dataclass(frozen=True)
class State:
    W: Any  # (C, D)
    params: Any  # method.dmn.DmnParams


def fit(
    text_weights, support, hyperparameters: dict[str, float], *, logit_scale: float = 100.0, **_
) -> State:
    from susx_cli.method.dmn import DmnParams

    gamma = hyperparameters.get(DMN_GAMMA.name, DMN_GAMMA.default)
    return State(text_weights.cpu(), DmnParams(gamma=gamma, scale=logit_scale))


def logits(state: State, queries):
    """(n, C) log((p + gamma p_mem) / (1 + gamma)) for queries (n, D) arriving in row order."""
    import torch

    from susx_cli.method.dmn import dmn_scores

    order = torch.arange(queries.shape[0])
    scores = dmn_scores(queries.cpu(), state.W, order, state.params)  # on the CPU, as TDA
    return (scores / (1.0 + state.params.gamma)).log()


SPEC = spec.MethodSpec(
    name="dmn-zs",
    label="DMN-ZS (single view, gamma=1)",
    color="#da8bc3",
    marker="P",
    line_style="-.",
    needs_support=False,
    fit=fit,
    logits=logits,
    online=True,
    group="test-time",
    stream=(DMN_GAMMA,),
    baseline="zero-shot",
)
