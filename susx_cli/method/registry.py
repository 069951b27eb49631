"""The methods susx knows, behind one registry: name -> ``MethodSpec``.

A spec says what a method needs (support features, a calibration), which calibration modes it has, its
hyperparameters (each with its flag, reference grid and valid range), how it looks in tables and charts,
and provides ``fit`` / ``logits`` (and optionally a fast ``search``). Every stage and command reads
methods from here; none compares a method's name. Adding a method: one module under ``method/methods/``
with a ``SPEC`` and one line in ``METHODS`` (or ``registered(spec)`` for the duration of a test).

Importing this module loads no tensor library: the specs' functions import the math when called.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from susx_cli.errors import SusxError
from susx_cli.method.methods import (
    dmn_zs,
    gda,
    tda,
    tda_transductive,
    tip_adapter,
    tip_adapter_tda,
    tipx,
    tipx_tda,
    zero_shot,
)
from susx_cli.method.spec import Choice, Hyperparameter, MethodSpec, SearchTask, Support

# Every way `calibrate` can choose hyperparameters: on a labelled validation split, leave-one-out or
# k-fold over the support set (name-only), or fixed values given on the command line.
MODES: tuple[str, ...] = ("val", "loo", "kfold", "fixed")
# Support images per class a calibration mode needs at the least: k-fold keeps one of every class in each
# training part and one to score (method/kfold.py).
MODE_MIN_SHOTS: dict[str, int] = {"kfold": 2}
# What `predict` runs without --method and without a calibration.
DEFAULT_METHOD = "zero-shot"


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        zero_shot.SPEC,
        tip_adapter.SPEC,
        tipx.SPEC,
        gda.SPEC,
        tda.SPEC,
        tda_transductive.SPEC,
        dmn_zs.SPEC,
        tip_adapter_tda.SPEC,
        tipx_tda.SPEC,
    )
}


def names() -> tuple[str, ...]:
    """Every registered method, in the order tables list them."""
    return tuple(METHODS)


def get(name: str) -> MethodSpec:
    """The spec of ``name``; one error line for a name that is not registered (never a fallback)."""
    spec = METHODS.get(name)
    if spec is None:
        raise SusxError(f"unknown method {name!r}", hint=f"use one of {', '.join(METHODS)}")
    return spec


def min_shots(spec: MethodSpec, mode: str | None, views: int = 1) -> int:
    """Support images per class that ``spec`` in calibration ``mode`` needs at the least, when each image
    brings ``views`` feature rows: the method's own minimum counts rows (GDA fits on every kept view), the
    mode's counts images (k-fold never splits an image's views)."""
    return max(-(-spec.min_shots // views), MODE_MIN_SHOTS.get(mode or "", 0))


def calibrated_names() -> tuple[str, ...]:
    """The methods `calibrate` chooses hyperparameters for."""
    return tuple(n for n, s in METHODS.items() if s.calibrated)


def paper_names() -> tuple[str, ...]:
    """What `eval` runs when no --method is given."""
    return tuple(n for n, s in METHODS.items() if s.in_paper)


def order(name: str) -> int:
    """A method's position in tables (unregistered names, e.g. in old result files, go last)."""
    return list(METHODS).index(name) if name in METHODS else len(METHODS)


def label(name: str) -> str:
    return METHODS[name].label if name in METHODS else name


def hyperparameter_flags() -> dict[str, tuple[Hyperparameter, tuple[str, ...]]]:
    """Every hyperparameter flag, with one declaration and the methods that have it (in registry order).
    Methods sharing a flag share its meaning (Tip-Adapter's and TIP-X's --alpha); a clash is a bug."""
    out: dict[str, tuple[Hyperparameter, tuple[str, ...]]] = {}
    for spec in METHODS.values():
        for h in spec.hyperparameters:
            if h.flag in out:
                known, owners = out[h.flag]
                if (known.name, known.low, known.high) != (h.name, h.low, h.high):
                    raise TypeError(f"{spec.name} declares {h.flag} differently from {owners[0]}")
                out[h.flag] = (known, (*owners, spec.name))
            else:
                out[h.flag] = (h, (spec.name,))
    return out


def check_mode(spec: MethodSpec, mode: str) -> None:
    if mode not in MODES:
        raise SusxError(f"unknown mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
    if mode not in spec.modes:
        name_only = [m for m in spec.modes if m in ("loo", "kfold")]
        hint = f"use one of {', '.join(spec.modes)}" if spec.modes else f"{spec.name} has no hyperparameters"
        if mode == "loo" and name_only:
            hint = f"use --mode {name_only[0]}: {spec.name}'s name-only choice over the support set"
        raise SusxError(f"--method {spec.name} has no --mode {mode}", hint=hint)


def refuse_foreign(spec: MethodSpec, given: Sequence[str], what: str = "--method") -> None:
    """Refuse hyperparameter flags (fixed values or grids) ``spec`` does not have."""
    own = {f for h in spec.hyperparameters for f in (h.flag, h.grid_flag)}
    foreign = [f for f in given if f not in own]
    if foreign:
        flags = hyperparameter_flags()
        owners = sorted({m for f in foreign for m in flags.get(f.removesuffix("-grid"), (None, ()))[1]})
        raise SusxError(
            f"{', '.join(foreign)} {'does' if len(foreign) == 1 else 'do'} not apply to {what} {spec.name}",
            hint=f"{'it is' if len(foreign) == 1 else 'they are'} for {' | '.join(owners) or '(no method)'}; "
            f"{spec.name} takes {', '.join(h.flag for h in spec.hyperparameters) or 'none'}",
        )


@contextmanager
def registered(spec: MethodSpec) -> Iterator[MethodSpec]:
    """Register ``spec`` for the duration of a ``with`` block (tests, experiments); the registry is put back
    as it was afterwards. A name already registered is refused."""
    if spec.name in METHODS:
        raise SusxError(f"method {spec.name!r} is already registered", hint="choose another name")
    METHODS[spec.name] = spec
    try:
        yield spec
    finally:
        METHODS.pop(spec.name, None)


# ------------------------------------------------------------------ the default search


def replay_search(
    spec: MethodSpec, text_weights, support: Support | None, task: SearchTask, **settings
) -> Choice:
    """Correct queries at every grid point by fitting and scoring the method (the generic search): mode
    val scores the validation queries with the whole support set, kfold each held-out fold with the other
    folds, loo each support image with the others. Ties keep the first point in grid order."""
    import itertools

    import torch

    names = [h.name for h in spec.hyperparameters]
    axes = [task.grid[n] for n in names]
    points = [dict(zip(names, p, strict=True)) for p in itertools.product(*axes)]
    parts = list(_search_parts(support, task))
    counts = torch.zeros(len(points), dtype=torch.int64)
    for part, (queries, labels) in parts:
        for i, point in enumerate(points):
            scores = spec.logits(spec.fit(text_weights, part, point, **settings), queries)
            counts[i] += int((scores.argmax(1) == labels).sum())
            if task.progress is not None:
                task.progress.advance(1 / len(parts))
    best = int(torch.argmax(counts))  # argmax keeps the first maximum: the tie rule
    total = sum(int(labels.shape[0]) for _, (_, labels) in parts)
    return Choice(points[best], int(counts[best]), total, counts.reshape([len(a) for a in axes]))


def _search_parts(support: Support | None, task: SearchTask):
    """(support part, (query features, labels)) per scored part of the search."""
    import torch

    if task.mode == "val":
        queries = task.validation()
        yield support, (queries.features, queries.labels)
        return
    if support is None:
        raise ValueError(f"a {task.mode} search splits the support set, and there is none")
    if task.mode == "kfold":
        for i in range(task.split.k):
            train, held = task.split.train(i), task.split.held_out(i)
            yield support.subset(train), (support.features[held], support.labels[held])
    else:  # loo
        n = support.labels.shape[0]
        for i in range(n):
            keep = torch.arange(n) != i
            yield support.subset(keep), (support.features[i : i + 1], support.labels[i : i + 1])


def run_search(
    spec: MethodSpec, text_weights, support: Support | None, task: SearchTask, **settings
) -> Choice:
    """The spec's own search, or the replay of its ``logits`` over the grid."""
    if spec.search is not None:
        return spec.search(text_weights, support, task, **settings)
    return replay_search(spec, text_weights, support, task, **settings)
