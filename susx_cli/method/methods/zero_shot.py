"""Zero-shot CLIP: the text classifier alone, Z = logit_scale f W^T + logit_bias. No support, no calibration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from susx_cli.method import spec


@dataclass(frozen=True)
class State:
    W: Any  # (C, D)
    logit_scale: float
    logit_bias: float


def fit(
    text_weights,
    support,
    hyperparameters: dict[str, float],
    *,
    logit_scale: float = 100.0,
    logit_bias: float = 0.0,
) -> State:
    return State(text_weights, logit_scale, logit_bias)


def logits(state: State, queries):
    """(n, C): the zero-shot logits of the queries (n, D)."""
    from susx_cli.method import tipx

    return tipx.zero_shot_logits(queries, state.W, state.logit_scale, state.logit_bias)


SPEC = spec.MethodSpec(
    name="zero-shot",
    label="Zero-shot CLIP",
    color="#9e9e9e",
    marker="x",
    line_style=":",
    needs_support=False,
    fit=fit,
    logits=logits,
    in_paper=True,
)
