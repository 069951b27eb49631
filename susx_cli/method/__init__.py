"""The method's math: pure tensor functions, no I/O (METHOD.md).

This module is also the one list of method names every stage and command uses; importing it loads no
tensor library.
"""

from __future__ import annotations

# Every method `predict` and `eval` run, in the order reports list them.
METHODS: tuple[str, ...] = ("zero-shot", "tip-adapter", "tip-x")
# The methods with hyperparameters (alpha, beta and, for TIP-X, gamma) that `calibrate` searches.
SEARCHABLE_METHODS: tuple[str, ...] = ("tip-x", "tip-adapter")


def uses_support(method: str) -> bool:
    """Whether ``method`` needs support features and a calibration (every method but zero-shot)."""
    return method in SEARCHABLE_METHODS


def uses_gamma(method: str) -> bool:
    """Whether ``method`` has the KL term (TIP-X); Tip-Adapter is TIP-X with gamma = 0."""
    return method == "tip-x"
