"""TDA-transductive (not in the paper): TDA's caches filled over the whole query set, then every query
read against the final caches (docs/METHOD.md); order-free, so not ``online``."""

from __future__ import annotations

from susx_cli.method import spec
from susx_cli.method.methods import tda


def logits(state: tda.State, queries):
    from susx_cli.method.tda import tda_transductive_logits

    return tda_transductive_logits(queries.cpu(), state.W, state.params)  # on the CPU, as TDA


SPEC = spec.MethodSpec(
    name="tda-transductive",
    label="TDA-transductive",
    color="#937860",
    marker="v",
    line_style="-.",
    needs_support=False,
    fit=tda.fit,
    logits=logits,
    group="test-time",
    stream=tda.STREAM,
    presets=tda.PRESETS,
    preset=tda.preset,
    baseline="zero-shot",
)
