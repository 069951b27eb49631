"""The method's math: pure tensor functions, no I/O (docs/METHOD.md).

This module is also the one list of method names every stage and command uses; importing it loads no
tensor library.
"""

from __future__ import annotations

# Every method `predict` and `eval` run, in the order reports list them.
METHODS: tuple[str, ...] = ("zero-shot", "tip-adapter", "tip-x", "gda")
# The paper's methods: what `eval` runs when no --method is given (GDA is opt-in).
PAPER_METHODS: tuple[str, ...] = ("zero-shot", "tip-adapter", "tip-x")
# The methods with hyperparameters that `calibrate` chooses.
SEARCHABLE_METHODS: tuple[str, ...] = ("tip-x", "tip-adapter", "gda")
# How each searchable method's hyperparameters can be chosen. loo is TIP-X / Tip-Adapter's name-only
# mode; kfold (over the support set) is every method's; GDA has no leave-one-out.
METHOD_MODES: dict[str, tuple[str, ...]] = {
    "tip-x": ("val", "loo", "kfold", "fixed"),
    "tip-adapter": ("val", "loo", "kfold", "fixed"),
    "gda": ("val", "kfold", "fixed"),
}


def uses_support(method: str) -> bool:
    """Whether ``method`` needs support features and a calibration (every method but zero-shot)."""
    return method in SEARCHABLE_METHODS


def uses_gamma(method: str) -> bool:
    """Whether ``method`` has the KL term (TIP-X); Tip-Adapter is TIP-X with gamma = 0."""
    return method == "tip-x"


def hyperparameters(method: str) -> tuple[str, ...]:
    """The hyperparameters a calibration of ``method`` fixes (the names of calibrate's options)."""
    if method == "gda":
        return ("alpha",)
    return ("alpha", "beta", "gamma") if uses_gamma(method) else ("alpha", "beta")
