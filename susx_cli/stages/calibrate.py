"""`calibrate`: choose (alpha, beta, gamma) on labelled validation features, by leave-one-out over the
support set (name-only: no target labels), or take fixed values; write calibration.json."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from susx_cli import runtime
from susx_cli.artifacts import calibration as cal_io
from susx_cli.artifacts import common
from susx_cli.errors import SusxError
from susx_cli.method import SEARCHABLE_METHODS, uses_gamma
from susx_cli.progress import bar, info
from susx_cli.stages.inputs import as_float64, load_method_inputs
from susx_cli.stages.results import StageResult

MODES = ("val", "loo", "fixed")
# The most (alpha, beta, gamma) points a search may try: the search keeps a count per point, and a
# larger grid is almost always a typo (the reference grid has 200,000 points).
MAX_GRID_POINTS = 10_000_000


def parse_grid(spec: str | None, axis: str) -> list[float]:
    """'reference' (METHOD.md), 'start:stop:steps' (reference formula), or 'v1,v2,...'; finite values only."""
    from susx_cli.method.search import REFERENCE, reference_grid

    option = f"--{axis}-grid"
    if spec is None or spec == "reference":
        return list(REFERENCE[axis])
    try:
        if ":" in spec:
            start, stop, steps = spec.split(":")
            start_f, stop_f, steps_i = finite(float(start), option), finite(float(stop), option), int(steps)
            if not 1 <= steps_i <= MAX_GRID_POINTS:
                raise SusxError(f"{option} {spec!r}: the number of steps must be 1..{MAX_GRID_POINTS:,}, got {steps_i}",
                                hint="e.g. 0.1:50:20")
            values = reference_grid(start_f, stop_f, steps_i)
        else:
            values = [finite(float(v), option) for v in spec.split(",") if v.strip()]
    except ValueError as exc:
        raise SusxError(f"cannot read {option} {spec!r}", hint="use 'reference', 'start:stop:steps' or '1,2,3'") from exc
    if not values:
        raise SusxError(f"{option} {spec!r} has no values", hint="give at least one value")
    return values


def finite(value: float | None, option: str) -> float | None:
    """``value`` unchanged, or a one-line error naming ``option`` when it is NaN or infinite."""
    if value is not None and not math.isfinite(value):
        raise SusxError(f"{option} must be a finite number, got {value}", hint="give a finite number")
    return value


def check_grid_size(sizes: dict[str, int]) -> None:
    """Refuse, before anything is allocated, a grid with more than ``MAX_GRID_POINTS`` points."""
    total = math.prod(sizes.values())
    if total > MAX_GRID_POINTS:
        shape = " x ".join(f"{n:,} {axis}" for axis, n in sizes.items())
        raise SusxError(
            f"the search grid has {total:,} points ({shape}), more than the {MAX_GRID_POINTS:,} allowed",
            hint="use fewer values per axis (--alpha-grid/--beta-grid/--gamma-grid)",
        )


def resolve_logit_scale(choice: str, model_scale: float | None) -> tuple[float, str]:
    """The logit scale (a positive finite number) and where it came from."""
    if choice == "model":
        if model_scale is None:
            raise SusxError("the text classifier records no learned logit scale", hint="use --logit-scale 100")
        scale, source = float(model_scale), "model"
    else:
        try:
            scale = float(choice)
        except ValueError as exc:
            raise SusxError(f"--logit-scale must be a number or 'model', got {choice!r}", hint="e.g. 100") from exc
        source = "reference (100)" if scale == 100.0 else "given"
    if not (math.isfinite(scale) and scale > 0):
        raise SusxError(f"--logit-scale must be a positive finite number, got {scale}", hint="the reference uses 100")
    return scale, source


def calibrate(
    text_path: Path,
    support_path: Path,
    output: Path,
    *,
    mode: str = "loo",
    val_path: Path | None = None,
    method: str = "tip-x",
    alpha: float | None = None,
    beta: float | None = None,
    gamma: float | None = None,
    alpha_grid: str | None = None,
    beta_grid: str | None = None,
    gamma_grid: str | None = None,
    tau: float = 0.5,
    logit_scale: str = "100",
    normalize: bool = False,
    heatmap: Path | None = None,
    device: str = "auto",
    overwrite: bool = False,
) -> StageResult:
    import torch

    from susx_cli.method.search import Grid, grid_search

    dev = runtime.method_device(device)  # a bad --device fails before any reading
    if mode not in MODES:
        raise SusxError(f"unknown mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
    if method not in SEARCHABLE_METHODS:
        raise SusxError(f"unknown method {method!r}", hint=f"use one of {', '.join(SEARCHABLE_METHODS)}")
    if mode == "val" and val_path is None:
        raise SusxError("--mode val needs --val FEATURES.h5", hint="embed a labelled validation split first")
    if mode != "val" and val_path is not None:
        mode = "val"
    if not (math.isfinite(tau) and tau > 0):
        raise SusxError(f"--tau must be a positive finite number, got {tau}", hint="the paper uses 0.5")
    for option, value in (("--alpha", alpha), ("--beta", beta), ("--gamma", gamma)):
        finite(value, option)
    if logit_scale != "model":
        resolve_logit_scale(logit_scale, None)  # a bad number fails before any reading

    inputs = load_method_inputs(text_path, support_path, val_path, query_labels=True, query_what="validation set")
    text, sup = inputs.text, inputs.support
    scale, scale_source = resolve_logit_scale(logit_scale, text.model.logit_scale)

    if mode == "fixed":
        missing = [n for n, v in (("--alpha", alpha), ("--beta", beta)) if v is None]
        if uses_gamma(method) and gamma is None:
            missing.append("--gamma")
        if missing:
            raise SusxError(f"--mode fixed needs {', '.join(missing)}", hint="give every hyperparameter of the method")
        grid = None
    else:
        grid = Grid(
            parse_grid(alpha_grid, "alpha"),
            parse_grid(beta_grid, "beta"),
            parse_grid(gamma_grid, "gamma") if uses_gamma(method) else [0.0],
        )
        check_grid_size({"alpha": len(grid.alpha), "beta": len(grid.beta), "gamma": len(grid.gamma)})
    options: dict[str, Any] = {
        "mode": mode,
        "method": method,
        "tau": tau,
        "logit_scale": scale,
        "normalize_per_class": normalize,
        "grid": None if grid is None else {"alpha": grid.alpha, "beta": grid.beta, "gamma": grid.gamma},
        "fixed": {"alpha": alpha, "beta": beta, "gamma": gamma} if mode == "fixed" else None,
    }
    # The support set is tagged so `predict` can refuse this calibration with another support set.
    ids = [inputs.ids["text"], {**inputs.ids["support"], "role": "support"}]
    if val_path is not None:
        ids.append(inputs.ids["query"])
    prov = common.provenance(options, ids)
    if common.decide_existing(output, cal_io.existing_provenance(output), prov, overwrite):
        info(f"{output} is up to date (same inputs and options); nothing to do")
        return StageResult("calibrate", [output], skipped=True)

    objective = None
    summary: dict[str, Any] = {}
    if mode != "fixed":
        as_t = lambda x: as_float64(x, dev)  # noqa: E731
        W, F = as_t(text.weights), as_t(sup.features)
        y = torch.from_numpy(sup.labels).to(dev)
        if mode == "val":
            val = inputs.query
            f, yq, exclude = as_t(val.features), torch.from_numpy(val.labels).to(dev), False
        else:
            if F.shape[0] < 2:
                raise SusxError("leave-one-out needs at least 2 support images", hint="curate more images")
            f, yq, exclude = F, y, True
        start = time.perf_counter()
        with bar(f"search {method} ({mode})", total=grid.size, unit="cfg") as progress:
            result = grid_search(
                f, yq, F, y, W, grid, tau=tau, logit_scale=scale, normalize=normalize, exclude_self=exclude, progress=progress
            )
        seconds = time.perf_counter() - start
        alpha, beta, gamma = result.alpha, result.beta, result.gamma
        objective = {
            "metric": "top1",
            "value": result.accuracy,
            "correct": result.correct,
            "queries": result.total,
            "on": "validation split" if mode == "val" else "support set, leave-one-out",
            "search_seconds": round(seconds, 3),
            "configurations": grid.size,
        }
        summary = {"top1": result.accuracy, "configurations_per_second": grid.size / max(seconds, 1e-9)}
        if heatmap is not None:
            b = grid.beta.index(beta)
            from susx_cli.plots import accuracy_heatmap

            accuracy_heatmap(result.counts[:, b, :].numpy() / result.total, grid.alpha, grid.gamma, beta, heatmap)
    if not uses_gamma(method):
        gamma = 0.0
    cal = cal_io.Calibration(
        method=method,
        mode=mode,
        alpha=float(alpha),
        beta=float(beta),
        gamma=float(gamma),
        tau=tau,
        logit_scale=scale,
        logit_scale_source=scale_source,
        normalize_per_class=normalize,
        classes=text.classes,
        model=text.model.to_dict(),
        objective=objective,
        grid=None if grid is None else {"alpha": grid.alpha, "beta": grid.beta, "gamma": grid.gamma, "size": grid.size},
        provenance=prov,
    )
    cal_io.write_calibration(output, cal)
    outputs = [output] + ([heatmap] if heatmap is not None and mode != "fixed" else [])
    summary.update({"method": method, "mode": mode, "alpha": cal.alpha, "beta": cal.beta, "gamma": cal.gamma})
    return StageResult("calibrate", outputs, summary=summary)
