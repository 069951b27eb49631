"""`calibrate`: choose a method's hyperparameters (its spec in method/registry.py names them) on labelled
validation features, name-only over the support set (leave-one-out or k-fold, as the method's modes allow:
no target label is read), or take fixed values; write calibration.json."""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import Any

from susx_cli import runtime
from susx_cli.artifacts import calibration as cal_io
from susx_cli.artifacts import common
from susx_cli.artifacts import outputs as output_paths
from susx_cli.errors import SusxError
from susx_cli.method import registry
from susx_cli.method.spec import Hyperparameter, MethodSpec, reference_grid
from susx_cli.progress import bar, info
from susx_cli.stages.inputs import as_float64, load_method_inputs, support_tensors
from susx_cli.stages.options import CalibrateOptions
from susx_cli.stages.results import CalibrateResult

# The most grid points a search may try: the search keeps a count per point, and a larger grid is almost
# always a typo (the reference TIP-X grid has 200,000 points).
MAX_GRID_POINTS = 10_000_000
DEFAULT_TAU = 0.5  # the paper's signature temperature
DEFAULT_FOLDS = 4


def parse_grid(text: str | None, h: Hyperparameter) -> list[float]:
    """'reference' (the spec's grid), 'start:stop:steps' (reference formula) or 'v1,v2,...'; every value
    within the hyperparameter's valid range."""
    option = h.grid_flag
    if text is None or text == "reference":
        return list(h.grid)
    try:
        if ":" in text:
            start, stop, steps = text.split(":")
            steps_i = int(steps)
            if not 1 <= steps_i <= MAX_GRID_POINTS:
                raise SusxError(
                    f"{option} {text!r}: the number of steps must be 1..{MAX_GRID_POINTS:,}, got {steps_i}",
                    hint="e.g. 0.1:50:20",
                )
            values = reference_grid(float(start), float(stop), steps_i)
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise SusxError(
            f"cannot read {option} {text!r}", hint="use 'reference', 'start:stop:steps' or '1,2,3'"
        ) from exc
    if not values:
        raise SusxError(f"{option} {text!r} has no values", hint="give at least one value")
    return [h.check(v, option) for v in values]


def check_grid_size(grid: dict[str, list[float]], spec: MethodSpec) -> None:
    """Refuse, before anything is allocated, a grid with more than ``MAX_GRID_POINTS`` points."""
    total = math.prod(len(v) for v in grid.values())
    if total > MAX_GRID_POINTS:
        shape = " x ".join(f"{len(v):,} {name}" for name, v in grid.items())
        flags = "/".join(h.grid_flag for h in spec.hyperparameters)
        raise SusxError(
            f"the search grid has {total:,} points ({shape}), more than the {MAX_GRID_POINTS:,} allowed",
            hint=f"use fewer values per axis ({flags})",
        )


def resolve_logit_scale(choice: str, model_scale: float | None) -> tuple[float, str]:
    """The logit scale (a positive finite number) and where it came from."""
    if choice == "model":
        if model_scale is None:
            raise SusxError(
                "the text classifier records no learned logit scale", hint="use --logit-scale 100"
            )
        scale, source = float(model_scale), "model"
    else:
        try:
            scale = float(choice)
        except ValueError as exc:
            raise SusxError(
                f"--logit-scale must be a number or 'model', got {choice!r}", hint="e.g. 100"
            ) from exc
        source = "reference (100)" if scale == 100.0 else "given"
    if not (math.isfinite(scale) and scale > 0):
        raise SusxError(
            f"--logit-scale must be a positive finite number, got {scale}", hint="the reference uses 100"
        )
    return scale, source


def resolve_logit_bias(choice: str, model_bias: float | None) -> float:
    """The additive logit bias: the model's own (SigLIP) with ``--logit-scale model``, else none."""
    return float(model_bias) if choice == "model" and model_bias is not None else 0.0


def calibrate(options: CalibrateOptions) -> CalibrateResult:
    """`susx calibrate`: choose ``options.method``'s hyperparameters on the files ``options`` name."""
    return calibrate_files(
        options.text,
        options.support,
        options.output,
        method=options.method,
        mode=options.mode,
        val_path=options.val,
        values=options.values,
        grids=options.grids,
        tau=options.tau,
        normalize=options.normalize,
        logit_scale=options.logit_scale,
        heatmap=options.heatmap,
        folds=options.folds,
        fold_seed=options.fold_seed,
        device=options.device,
        overwrite=options.overwrite,
    )


def calibrate_files(
    text_path: Path,
    support_path: Path,
    output: Path,
    *,
    method: str = "tip-x",
    mode: str | None = None,
    val_path: Path | None = None,
    values: dict[str, float] | None = None,
    grids: dict[str, str] | None = None,
    tau: float | None = None,
    normalize: bool = False,
    logit_scale: str = "100",
    heatmap: Path | None = None,
    folds: int | None = None,
    fold_seed: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
) -> CalibrateResult:
    """``values`` (mode fixed) and ``grids`` (the searching modes: 'reference', 'start:stop:steps' or
    'v1,v2') are keyed by the method's hyperparameter names. ``mode`` defaults to val with ``val_path``,
    else the method's name-only mode. Options the method or the mode does not use are refused."""
    import torch

    dev = runtime.method_device(device)  # a bad --device fails before any reading
    spec = registry.get(method)
    mode = mode or default_mode(spec, val_path)
    registry.check_mode(spec, mode)
    fixed, grid, settings = _check_options(
        spec, mode, val_path, values or {}, grids or {}, tau, normalize, heatmap, folds, fold_seed
    )
    if logit_scale != "model":
        resolve_logit_scale(logit_scale, None)  # a bad number fails before any reading
    folds, fold_seed = folds or DEFAULT_FOLDS, fold_seed or 0
    output_paths.check_paths(
        [text_path, support_path, val_path], [("-o/--output", output), ("--heatmap", heatmap)]
    )
    if heatmap is not None:
        output_paths.claim(heatmap, output_paths.HEATMAP, overwrite=overwrite, option="--heatmap")

    inputs = load_method_inputs(
        text_path, support_path, val_path, query_labels=True, query_what="validation set"
    )
    text, sup = inputs.text, inputs.support
    scale, scale_source = resolve_logit_scale(logit_scale, text.model.logit_scale)
    bias = resolve_logit_bias(logit_scale, text.model.logit_bias)
    options: dict[str, Any] = {
        "mode": mode,
        "method": method,
        "logit_scale": scale,
        "settings": settings,
        "grid": grid,
        "fixed": fixed,
    }
    if bias:  # only models with a bias record one, so calibrations of the others keep their provenance
        options["logit_bias"] = bias
    if mode == "kfold":
        options["folds"] = {"k": folds, "seed": fold_seed}
    prov = _provenance(options, inputs, val_path)
    if common.decide_existing(output, cal_io.existing_provenance(output), prov, overwrite):
        info(f"{output} is up to date (same inputs and options); nothing to do")
        return CalibrateResult(
            [output], skipped=True, summary=calibration_summary(cal_io.read_calibration(output))
        )

    W = as_float64(text.weights, dev)
    support = support_tensors(sup, dev)
    if spec.check_support is not None:
        spec.check_support(W, support)  # refused here, not first at predict
    chosen, objective, split_record = dict(fixed or {}), None, None
    if mode != "fixed":
        queries = None
        if mode == "val":
            q = inputs.query
            queries = registry.Support(as_float64(q.features, dev), torch.from_numpy(q.labels).to(dev))
        search = functools.partial(search_hyperparameters, spec, mode, W, support, grid, queries=queries)
        settings_of_search = {"logit_scale": scale, "logit_bias": bias, **settings}
        choice, objective, split_record = _search(search, grid, mode, folds, fold_seed, settings_of_search)
        chosen = choice.values
        if heatmap is not None:
            _draw_heatmap(spec, choice, grid, heatmap, objective["on"])
    cal = cal_io.Calibration(
        method=method,
        mode=mode,
        hyperparameters={h.name: float(chosen[h.name]) for h in spec.hyperparameters},
        settings=settings,
        logit_scale=scale,
        logit_scale_source=scale_source,
        logit_bias=bias,
        classes=text.classes,
        model=text.model.to_dict(),
        objective=objective,
        grid=None if grid is None else {**grid, "size": objective["configurations"]},
        provenance=prov,
        method_record=_method_record(spec, inputs, support),
        folds=split_record,
    )
    cal_io.write_calibration(output, cal)
    outputs = [output] + ([heatmap] if heatmap is not None else [])
    return CalibrateResult(outputs, summary=calibration_summary(cal))


def _provenance(options: dict[str, Any], inputs: Any, val_path: Path | None) -> dict[str, Any]:
    # The support set is tagged so `predict` can refuse this calibration with another support set.
    ids = [inputs.ids["text"], {**inputs.ids["support"], "role": "support"}]
    if val_path is not None:
        ids.append(inputs.ids["query"])
    return common.provenance(options, ids)


def _search(
    search: Any, grid: dict[str, list[float]], mode: str, folds: int, fold_seed: int, settings: dict[str, Any]
) -> tuple[Any, dict[str, Any], dict[str, Any] | None]:
    """(the search's choice, its objective record, the k-fold record) of one search over ``grid``."""
    choice, split = search(folds=folds, fold_seed=fold_seed, **settings)
    objective = {
        "metric": "top1",
        "value": choice.accuracy,  # a fraction of the queries
        "correct": choice.correct,
        "queries": choice.total,
        "on": _OBJECTIVE_ON[mode].format(k=folds),
        "search_seconds": round(choice.seconds, 3),
        "configurations": math.prod(len(v) for v in grid.values()),
    }
    split_record = None if split is None else cal_io.kfold_record(split.to_dict())
    return choice, objective, split_record


def default_mode(spec: MethodSpec, val_path: Path | None) -> str:
    """val with a validation set, else the method's first name-only mode (loo, then kfold)."""
    if val_path is not None:
        return "val"
    return next((m for m in ("loo", "kfold") if m in spec.modes), spec.modes[0] if spec.modes else "fixed")


def calibration_summary(cal: cal_io.Calibration) -> dict[str, Any]:
    """What `calibrate` reports, run or skipped: method, mode, the chosen values and the objective (top-1
    in %, None for fixed values)."""
    objective = cal.objective or {}
    speed = objective["configurations"] / max(objective["search_seconds"], 1e-3) if objective else None
    return {
        "method": cal.method,
        "mode": cal.mode,
        "hyperparameters": dict(cal.hyperparameters),
        "top1": 100 * objective["value"] if objective else None,
        "objective_on": objective.get("on"),
        "configurations_per_second": speed,
    }


_OBJECTIVE_ON = {
    "val": "validation split",
    "loo": "support set, leave-one-out",
    "kfold": "support set, {k}-fold",
}


def _check_options(
    spec: MethodSpec,
    mode: str,
    val_path: Path | None,
    values: dict[str, float],
    grids: dict[str, str],
    tau: float | None,
    normalize: bool,
    heatmap: Path | None,
    folds: int | None,
    fold_seed: int | None,
) -> tuple[dict[str, float] | None, dict[str, list[float]] | None, dict[str, Any]]:
    """(fixed values, parsed grid, settings) from the options, refusing every option the method or the mode
    does not use: another method's hyperparameters, grids with fixed values, fixed values with a search,
    fold options outside kfold, --val outside val, --heatmap without a search or a method with no plot."""
    by_name = {h.name: h for h in spec.hyperparameters}
    foreign = [n for n in (*values, *grids) if n not in by_name]
    if foreign:
        raise SusxError(
            f"--method {spec.name} has no hyperparameter {', '.join(sorted(set(foreign)))}",
            hint=f"its hyperparameters: {', '.join(by_name) or 'none'}",
        )
    unused = []
    if mode == "fixed":
        unused += [by_name[n].grid_flag for n in grids]
    else:
        unused += [by_name[n].flag for n in values]
    if mode != "kfold":
        unused += [f for f, v in (("--folds", folds), ("--fold-seed", fold_seed)) if v is not None]
    if mode != "val" and val_path is not None:
        unused.append("--val")
    if heatmap is not None and (mode == "fixed" or spec.heatmap is None):
        unused.append("--heatmap")
    if tau is not None and "tau" not in spec.settings:
        unused.append("--tau")
    if normalize and "normalize" not in spec.settings:
        unused.append("--normalize-per-class")
    if unused:
        raise SusxError(
            f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} nothing with --method {spec.name} "
            f"--mode {mode}",
            hint=f"drop {'it' if len(unused) == 1 else 'them'}; `susx calibrate --help` lists what each "
            "method and mode reads",
        )
    if mode == "val" and val_path is None:
        raise SusxError("--mode val needs --val FEATURES.h5", hint="embed a labelled validation split first")
    if folds is not None and folds < 2:
        raise SusxError(f"--folds must be 2 or more, got {folds}", hint="e.g. --folds 4")
    settings: dict[str, Any] = {}
    if "tau" in spec.settings:
        settings["tau"] = DEFAULT_TAU if tau is None else tau
        if not (math.isfinite(settings["tau"]) and settings["tau"] > 0):
            raise SusxError(f"--tau must be a positive finite number, got {tau}", hint="the paper uses 0.5")
    if "normalize" in spec.settings:
        settings["normalize"] = bool(normalize)
    if mode == "fixed":
        missing = [h.flag for h in spec.hyperparameters if values.get(h.name) is None]
        if missing:
            raise SusxError(
                f"--mode fixed needs {', '.join(missing)}", hint="give every hyperparameter of the method"
            )
        return {h.name: h.check(values[h.name]) for h in spec.hyperparameters}, None, settings
    grid = {h.name: parse_grid(grids.get(h.name), h) for h in spec.hyperparameters}
    check_grid_size(grid, spec)
    return None, grid, settings


def search_hyperparameters(
    spec: MethodSpec,
    mode: str,
    W,
    support,
    grid: dict[str, list[float]],
    *,
    queries=None,
    folds: int = DEFAULT_FOLDS,
    fold_seed: int = 0,
    **settings,
):
    """The method's search in ``mode`` on tensors (no I/O): W (C, D), support and ``queries`` (mode val)
    as ``Support``. Returns (choice with its ``seconds``, the kfold split or None)."""
    split = None
    if mode == "kfold":
        from susx_cli.method.kfold import stratified_folds

        split = stratified_folds(support.labels, folds, fold_seed, W.shape[0])
    size = math.prod(len(v) for v in grid.values())
    start = time.perf_counter()
    with bar(f"search {spec.name} ({mode})", total=size, unit="cfg") as progress:
        task = registry.SearchTask(grid, mode, queries, split, progress)
        choice = registry.run_search(spec, W, support, task, **settings)
    choice.seconds = time.perf_counter() - start
    return choice, split


def _draw_heatmap(
    spec: MethodSpec, choice, grid: dict[str, list[float]], path: Path, objective_on: str
) -> None:
    """Accuracy over the spec's two heatmap hyperparameters, the others at their chosen values."""
    from susx_cli.plots import accuracy_heatmap

    rows, cols = spec.heatmap
    names = [h.name for h in spec.hyperparameters]
    index = tuple(slice(None) if n in (rows, cols) else grid[n].index(choice.values[n]) for n in names)
    (held,) = [n for n in names if n not in (rows, cols)]
    accuracy_heatmap(
        choice.counts[index].numpy() / choice.total,
        grid[rows],
        grid[cols],
        choice.values[held],
        path,
        chosen=(choice.values[rows], choice.values[cols]),
        objective_on=objective_on,
        method=spec.label,
    )


def _method_record(spec: MethodSpec, inputs, support) -> dict[str, Any] | None:
    """What the method records about itself, with the support set it is re-fitted from at predict."""
    if not spec.record:
        return None
    ids = inputs.ids["support"]
    return {
        **spec.record,
        "support": {"path": ids["path"], "sha256": ids["sha256"]},
        "support_size": int(support.labels.shape[0]),
    }
