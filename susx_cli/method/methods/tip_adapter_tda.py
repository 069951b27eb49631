"""Tip-Adapter + TDA: the SuS support set as Tip-Adapter's static cache with its calibrated alpha and beta,
TDA's caches over the query stream added on top (docs/METHOD.md "TIP-X + TDA", without the KL term)."""

from __future__ import annotations

from susx_cli.method import spec
from susx_cli.method.methods import tda, tip_adapter, tipx_tda

SPEC = spec.MethodSpec(
    name="tip-adapter+tda",
    label="Tip-Adapter + TDA",
    color="#64b5cd",
    marker="h",
    line_style="-.",
    needs_support=True,
    fit=tipx_tda.combine(tip_adapter.fit, tip_adapter.logits),
    logits=tipx_tda.logits,
    online=True,
    modes=tip_adapter.SPEC.modes,
    hyperparameters=tip_adapter.SPEC.hyperparameters,
    settings=tip_adapter.SPEC.settings,
    search=tip_adapter.search,
    group="test-time",
    stream=tda.STREAM,
    presets=tda.PRESETS,
    preset=tda.preset,
    baseline="tip-adapter",
)
