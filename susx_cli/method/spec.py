"""What a method is, as data: ``MethodSpec`` and its ``Hyperparameter``s, the ``Support`` set, a search's
``SearchTask`` and its ``Choice``. The registry (method/registry.py) maps names to specs; each method's
module (method/methods/) declares one. Importing this module loads no tensor library."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from susx_cli.errors import SusxError


def reference_grid(start: float, stop: float, steps: int) -> list[float]:
    """The reference's grid: start + i (stop - start) / steps for i in 0..steps-1 (stop excluded)."""
    return [start + i * (stop - start) / steps for i in range(steps)]


@dataclass(frozen=True)
class Hyperparameter:
    """One number a calibration fixes. ``low``/``high``: the valid range (inclusive), which both command-line
    values and values read from a calibration file must meet; ``grid``: the reference search grid."""

    name: str
    default: float
    grid: tuple[float, ...]
    flag: str  # calibrate's and eval's option for a fixed value; its grid is flag + "-grid"
    help: str
    low: float = -math.inf
    high: float = math.inf

    @property
    def grid_flag(self) -> str:
        return f"{self.flag}-grid"

    @property
    def param(self) -> str:
        """The stage / command parameter name of the flag (``--gda-alpha`` -> ``gda_alpha``)."""
        return self.flag.lstrip("-").replace("-", "_")

    def check(self, value: Any, where: str | None = None) -> float:
        """``value`` as a float, or one error line naming the flag (or ``where`` it was read from)."""
        what = f"{self.name} in {where}" if where else self.flag
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SusxError(f"{what} must be a number, got {value!r}", hint=self.range_hint()) from None
        if not (math.isfinite(number) and self.low <= number <= self.high):
            raise SusxError(
                f"{what} must be a finite number in {self.range_text()}, got {value}", hint=self.range_hint()
            )
        return number

    def range_text(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"

    def range_hint(self) -> str:
        return f"{self.flag}: {self.help.rstrip('.')}; valid range {self.range_text()}"


@dataclass(frozen=True)
class Support:
    """Labelled support features: features (N, D) float64, labels (N,) int64 in 0..C-1, and optionally
    views (N, K, D) float64: the K augmented views' unit rows each feature row averages (a method that fits
    on views reads them; the others use ``features``)."""

    features: Any
    labels: Any
    views: Any = None

    def subset(self, index) -> Support:
        """The images at ``index`` (a (n,) index tensor), their views with them."""
        views = None if self.views is None else self.views[index]
        return Support(self.features[index], self.labels[index], views)

    def view_rows(self) -> tuple[Any, Any]:
        """(N*K, D) view rows and their (N*K,) labels where views are kept; else (features, labels)."""
        if self.views is None:
            return self.features, self.labels
        n, k, d = self.views.shape
        return self.views.reshape(n * k, d), self.labels.repeat_interleave(k)


@dataclass
class Choice:
    """What a search chose: the values, the correct-query count at them out of ``total``, and the count at
    every grid point, shaped (len(grid[h]) for h in the spec's hyperparameters)."""

    values: dict[str, float]
    correct: int
    total: int
    counts: Any  # int64 tensor
    seconds: float = 0.0  # how long the search took

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


@dataclass(frozen=True)
class SearchTask:
    """One search: the grid (a list per hyperparameter), the mode, and what the mode scores on:
    ``queries`` (mode val: labelled validation features as a ``Support``) or ``split`` (mode kfold)."""

    grid: dict[str, list[float]]
    mode: str
    queries: Support | None = None
    split: Any = None  # kfold.FoldSplit
    progress: Any = None  # something with .advance(configurations)

    def validation(self) -> Support:
        """The labelled validation queries that mode val scores on."""
        if self.queries is None:
            raise ValueError(f"a {self.mode} search has no validation queries")
        return self.queries


# How report groups rows (MethodSpec.group): rows of different groups are never set side by side or averaged.
GROUPS: dict[str, str] = {
    "name-only": "name-only: class names (and support images made from them)",
    "test-time": "test-time: uses the unlabelled test stream",
}


@dataclass(frozen=True)
class MethodSpec:
    """A method as a unit. ``fit(text_weights (C, D), support or None, hyperparameters, **settings) ->
    state`` and ``logits(state, queries (n, D)) -> (n, C)`` float64 (an ``online`` method walks the rows in
    the given order); ``search(text_weights, support, task, **settings) -> Choice`` (None: replay ``logits``
    over the grid). ``settings``: options besides the hyperparameters that the method reads (the zero-shot
    term's ``logit_scale`` and ``logit_bias`` go to every method)."""

    name: str
    label: str  # tables and charts
    color: str
    marker: str
    line_style: Any  # matplotlib line style of its few-shot curves
    needs_support: bool
    fit: Callable[..., Any]
    logits: Callable[[Any, Any], Any]
    online: bool = False
    modes: tuple[str, ...] = ()  # calibration modes; () for a method without hyperparameters
    hyperparameters: tuple[Hyperparameter, ...] = ()
    settings: tuple[str, ...] = ()  # e.g. ("tau", "normalize")
    search: Callable[..., Choice] | None = None
    check_support: Callable[[Any, Support], None] | None = None  # refuse a support set before any search
    # Support feature rows per class its fit needs at the least (0: none, a class may lack images; GDA: 2, a
    # within-class covariance, so one image with its kept views is enough); `eval` checks it, with the
    # mode's own minimum in images (registry.min_shots), before any work.
    min_shots: int = 0
    in_paper: bool = False  # run by `eval` when no --method is given
    heatmap: tuple[str, str] | None = None  # the two hyperparameters calibrate --heatmap draws
    record: dict[str, Any] = field(default_factory=dict)  # written into each calibration of the method
    # Test-time methods (docs/METHOD.md "Test-time methods"): the report group (a key of GROUPS), the
    # values no calibration chooses (``stream``: given to ``fit`` beside the calibrated ones, defaults unless
    # a preset sets them), ``preset(name, dataset) -> stream values`` for --tda-preset, and the method whose
    # rows stand beside this one's (the same classifier without the test stream).
    group: str = "name-only"
    stream: tuple[Hyperparameter, ...] = ()
    presets: tuple[str, ...] = ()
    preset: Callable[[str, str | None], dict[str, float]] | None = None
    baseline: str | None = None

    @property
    def calibrated(self) -> bool:
        """Whether predict needs a calibration of this method (one with calibration modes); a method
        without modes runs with its hyperparameters' defaults."""
        return bool(self.modes)

    def defaults(self) -> dict[str, float]:
        return {h.name: h.default for h in self.hyperparameters}

    def stream_values(self, preset: str | None = None, dataset: str | None = None) -> dict[str, float]:
        """The ``stream`` values: their defaults, or those of ``preset`` (one error line for a preset the
        method does not have)."""
        if preset is None or preset == "default":
            return {h.name: h.default for h in self.stream}
        if preset not in self.presets or self.preset is None:
            raise SusxError(
                f"--tda-preset {preset} does not apply to --method {self.name}",
                hint=f"use one of {', '.join(self.presets)}" if self.presets else "drop --tda-preset",
            )
        return self.preset(preset, dataset)

    def hyperparameter(self, name: str) -> Hyperparameter:
        return {h.name: h for h in self.hyperparameters}[name]

    def check_values(self, values: dict[str, Any], where: str | None = None) -> dict[str, float]:
        """Exactly this method's hyperparameters, each validated; one error line otherwise."""
        names = [h.name for h in self.hyperparameters]
        if sorted(values) != sorted(names):
            raise SusxError(
                f"{where or 'the hyperparameters'} give {', '.join(sorted(values)) or 'none'} for {self.name}, "
                f"which has {', '.join(names) or 'none'}",
                hint="re-create the calibration with susx calibrate",
            )
        return {h.name: h.check(values[h.name], where) for h in self.hyperparameters}
