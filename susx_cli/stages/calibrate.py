"""`calibrate`: choose a method's hyperparameters (TIP-X / Tip-Adapter: alpha, beta, gamma; GDA: alpha)
on labelled validation features, name-only over the support set (leave-one-out for TIP-X / Tip-Adapter,
k-fold for every method: no target label is read), or take fixed values; write calibration.json."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from susx_cli import runtime
from susx_cli.artifacts import calibration as cal_io
from susx_cli.artifacts import common
from susx_cli.artifacts import outputs as output_paths
from susx_cli.errors import SusxError
from susx_cli.method import METHOD_MODES, SEARCHABLE_METHODS, hyperparameters, uses_gamma
from susx_cli.progress import bar, info, warn
from susx_cli.stages.inputs import as_float64, load_method_inputs
from susx_cli.stages.results import StageResult

MODES = ("val", "loo", "kfold", "fixed")
GDA_ESTIMATOR = "shrinkage-pinv"  # P = D pinv((N - 1) Sigma + trace(Sigma) I_D), METHOD.md's GDA step 3
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
                raise SusxError(
                    f"{option} {spec!r}: the number of steps must be 1..{MAX_GRID_POINTS:,}, got {steps_i}",
                    hint="e.g. 0.1:50:20",
                )
            values = reference_grid(start_f, stop_f, steps_i)
        else:
            values = [finite(float(v), option) for v in spec.split(",") if v.strip()]
    except ValueError as exc:
        raise SusxError(
            f"cannot read {option} {spec!r}", hint="use 'reference', 'start:stop:steps' or '1,2,3'"
        ) from exc
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
    folds: int = 4,
    fold_seed: int = 0,
    device: str = "auto",
    overwrite: bool = False,
) -> StageResult:
    import torch

    dev = runtime.method_device(device)  # a bad --device fails before any reading
    if mode not in MODES:
        raise SusxError(f"unknown mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
    if method not in SEARCHABLE_METHODS:
        raise SusxError(f"unknown method {method!r}", hint=f"use one of {', '.join(SEARCHABLE_METHODS)}")
    if mode == "val" and val_path is None:
        raise SusxError("--mode val needs --val FEATURES.h5", hint="embed a labelled validation split first")
    if mode == "kfold" and val_path is not None:
        warn("--mode kfold chooses on the support set alone: --val is not read")
        val_path = None
    if mode != "val" and val_path is not None:
        mode = "val"
    if not (math.isfinite(tau) and tau > 0):
        raise SusxError(f"--tau must be a positive finite number, got {tau}", hint="the paper uses 0.5")
    for option, value in (("--alpha", alpha), ("--beta", beta), ("--gamma", gamma)):
        finite(value, option)
    if logit_scale != "model":
        resolve_logit_scale(logit_scale, None)  # a bad number fails before any reading

    _check_method_mode(method, mode, heatmap, beta_grid, gamma_grid, (beta, gamma))
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

    fixed = _fixed_values(method, alpha, beta, gamma) if mode == "fixed" else None
    grid = None if mode == "fixed" else _grid(method, alpha_grid, beta_grid, gamma_grid)
    if grid is not None:
        check_grid_size({"alpha": len(grid.alpha), "beta": len(grid.beta), "gamma": len(grid.gamma)})
    options: dict[str, Any] = {
        "mode": mode,
        "method": method,
        "tau": tau,
        "logit_scale": scale,
        "normalize_per_class": normalize,
        "grid": _grid_record(method, grid, sizes=False),
        "fixed": fixed,
    }
    if bias:  # only models with a bias record one, so calibrations of the others keep their provenance
        options["logit_bias"] = bias
    if mode == "kfold":
        options["folds"] = {"k": folds, "seed": fold_seed}
    # The support set is tagged so `predict` can refuse this calibration with another support set.
    ids = [inputs.ids["text"], {**inputs.ids["support"], "role": "support"}]
    if val_path is not None:
        ids.append(inputs.ids["query"])
    prov = common.provenance(options, ids)
    if common.decide_existing(output, cal_io.existing_provenance(output), prov, overwrite):
        info(f"{output} is up to date (same inputs and options); nothing to do")
        return StageResult(
            "calibrate", [output], skipped=True, summary=calibration_summary(cal_io.read_calibration(output))
        )

    as_t = lambda x: as_float64(x, dev)  # noqa: E731
    W, F = as_t(text.weights), as_t(sup.features)
    y = torch.from_numpy(sup.labels).to(dev)
    if method == "gda":
        from susx_cli.method import gda

        gda.check_support(F, y, W.shape[0])  # refused here, not first at predict
    objective = split_record = None
    values = dict(fixed or {})
    if mode != "fixed":
        split = None
        if mode == "kfold":
            from susx_cli.method.kfold import stratified_folds

            split = stratified_folds(y, folds, fold_seed, W.shape[0])
            split_record = cal_io.kfold_record(split.to_dict())
        start = time.perf_counter()
        if method == "gda":
            values, correct, total, counts = _search_gda(mode, inputs, W, F, y, grid, split, scale, bias, dev)
        else:
            values, correct, total, counts = _search_tipx(
                method,
                mode,
                inputs,
                W,
                F,
                y,
                grid,
                split,
                tau=tau,
                logit_scale=scale,
                logit_bias=bias,
                normalize=normalize,
                dev=dev,
            )
        seconds = time.perf_counter() - start
        accuracy = correct / total if total else 0.0
        objective = {
            "metric": "top1",
            "value": accuracy,  # a fraction, as calibrations always recorded it; value_percent says it in %
            "value_percent": 100 * accuracy,
            "correct": correct,
            "queries": total,
            "on": _OBJECTIVE_ON[mode].format(k=folds),
            "search_seconds": round(seconds, 3),
            "configurations": grid.size,
        }
        if heatmap is not None:
            b = grid.beta.index(values["beta"])
            from susx_cli.plots import accuracy_heatmap

            accuracy_heatmap(
                counts[:, b, :].numpy() / total,
                grid.alpha,
                grid.gamma,
                values["beta"],
                heatmap,
                chosen=(values["alpha"], values.get("gamma") or 0.0),
                objective_on=objective["on"],
                method={"tip-x": "TIP-X", "tip-adapter": "Tip-Adapter"}.get(method, method),
            )
    gda_record = None
    if method == "gda":
        gda_record = {
            "means": "per-class mean of the support features",
            "covariance": "pooled within-class, X^T X / (N - 1)",
            "estimator": GDA_ESTIMATOR,
            "formula": "P = D * pinv((N - 1) * Sigma + trace(Sigma) * I_D)",
            "dtype": "float64",
            "support": {"path": inputs.ids["support"]["path"], "sha256": inputs.ids["support"]["sha256"]},
            "support_size": int(F.shape[0]),
        }
    cal = cal_io.Calibration(
        method=method,
        mode=mode,
        alpha=float(values["alpha"]),
        beta=float(values.get("beta") or 0.0),
        gamma=float(values.get("gamma") or 0.0) if uses_gamma(method) else 0.0,
        tau=tau,
        logit_scale=scale,
        logit_scale_source=scale_source,
        logit_bias=bias,
        normalize_per_class=normalize,
        classes=text.classes,
        model=text.model.to_dict(),
        objective=objective,
        grid=_grid_record(method, grid, sizes=True),
        provenance=prov,
        gda=gda_record,
        folds=split_record,
    )
    cal_io.write_calibration(output, cal)
    outputs = [output] + ([heatmap] if heatmap is not None and mode != "fixed" else [])
    return StageResult("calibrate", outputs, summary=calibration_summary(cal))


def calibration_summary(cal: cal_io.Calibration) -> dict[str, Any]:
    """What `calibrate` reports, run or skipped: method, mode, the chosen values and the objective (top-1
    in %, None for fixed values)."""
    values = {k: v for k, v in cal.hyperparameters().items() if k != "tau"}
    objective = cal.objective or {}
    top1 = objective.get("value_percent", 100 * objective["value"] if "value" in objective else None)
    speed = objective["configurations"] / max(objective["search_seconds"], 1e-3) if objective else None
    return {
        "method": cal.method,
        "mode": cal.mode,
        **values,
        "top1": top1,
        "objective_on": objective.get("on"),
        "configurations_per_second": speed,
    }


_OBJECTIVE_ON = {
    "val": "validation split",
    "loo": "support set, leave-one-out",
    "kfold": "support set, {k}-fold",
}


def _check_method_mode(
    method: str,
    mode: str,
    heatmap: Path | None,
    beta_grid: str | None,
    gamma_grid: str | None,
    beta_gamma: tuple[float | None, float | None],
) -> None:
    """Refuse a mode the method has, and options it does not use (GDA has alpha only)."""
    if mode not in METHOD_MODES[method]:
        hint = (
            "use --mode kfold: GDA's name-only choice of alpha over the support set"
            if method == "gda"
            else f"use one of {', '.join(METHOD_MODES[method])}"
        )
        raise SusxError(f"--method {method} has no --mode {mode}", hint=hint)
    if method != "gda":
        return
    if any(g not in (None, "reference") for g in (beta_grid, gamma_grid)) or any(
        v is not None for v in beta_gamma
    ):
        raise SusxError(
            "--method gda has alpha only: no beta or gamma", hint="drop --beta/--gamma and their grids"
        )
    if heatmap is not None:
        raise SusxError(
            "--heatmap plots accuracy over (alpha, gamma); GDA has alpha only",
            hint="drop --heatmap; the calibration file lists the accuracy at every alpha",
        )


def _fixed_values(
    method: str, alpha: float | None, beta: float | None, gamma: float | None
) -> dict[str, Any]:
    given = {"alpha": alpha, "beta": beta, "gamma": gamma}
    missing = [f"--{n}" for n in hyperparameters(method) if given[n] is None]
    if missing:
        raise SusxError(
            f"--mode fixed needs {', '.join(missing)}", hint="give every hyperparameter of the method"
        )
    if method == "gda":
        return {"alpha": alpha}
    return {"alpha": alpha, "beta": beta, "gamma": gamma}


def _grid(method: str, alpha_grid: str | None, beta_grid: str | None, gamma_grid: str | None):
    """TIP-X's (alpha, beta, gamma) grid; Tip-Adapter's has gamma = [0]; GDA's is alpha only ('reference':
    the paper's {1e-4, ..., 100}), stored with beta = gamma = [0]."""
    from susx_cli.method.search import Grid

    if method == "gda":
        from susx_cli.method.gda import ALPHA_GRID

        alphas = list(ALPHA_GRID) if alpha_grid in (None, "reference") else parse_grid(alpha_grid, "alpha")
        return Grid(alphas, [0.0], [0.0])
    return Grid(
        parse_grid(alpha_grid, "alpha"),
        parse_grid(beta_grid, "beta"),
        parse_grid(gamma_grid, "gamma") if uses_gamma(method) else [0.0],
    )


def _grid_record(method: str, grid, *, sizes: bool) -> dict[str, Any] | None:
    if grid is None:
        return None
    out: dict[str, Any] = (
        {"alpha": grid.alpha}
        if method == "gda"
        else {"alpha": grid.alpha, "beta": grid.beta, "gamma": grid.gamma}
    )
    return {**out, "size": grid.size} if sizes else out


def _search_gda(mode: str, inputs, W, F, y, grid, split, scale: float, bias: float, dev: str):
    """GDA's alpha: on the validation split (head from the whole support set) or by k-fold.
    Returns (values, correct, total, counts (A,))."""
    import torch

    from susx_cli.method import gda, kfold

    if mode == "val":
        head = gda.fit_gda(F, y, W.shape[0])
        f, yq = as_float64(inputs.query.features, dev), torch.from_numpy(inputs.query.labels).to(dev)
        choice = gda.choose_alpha(f, yq, W, head, grid.alpha, scale, logit_bias=bias)
    else:
        choice = kfold.gda_alpha(F, y, W, split, grid.alpha, scale, logit_bias=bias)
    return {"alpha": choice.alpha}, choice.correct, choice.total, choice.counts


def _search_tipx(
    method: str,
    mode: str,
    inputs,
    W,
    F,
    y,
    grid,
    split,
    *,
    tau: float,
    logit_scale: float,
    logit_bias: float,
    normalize: bool,
    dev: str,
):
    """TIP-X / Tip-Adapter's (alpha, beta, gamma) by exhaustive grid search on the validation split, by
    leave-one-out or by k-fold over the support set. Returns (values, correct, total, counts (A, B, G))."""
    import torch

    from susx_cli.method import kfold
    from susx_cli.method.search import grid_search

    opts = dict(tau=tau, logit_scale=logit_scale, logit_bias=logit_bias, normalize=normalize)
    with bar(f"search {method} ({mode})", total=grid.size, unit="cfg") as progress:
        if mode == "kfold":
            result = kfold.grid_search(F, y, W, grid, split, progress=progress, **opts)
        else:
            if mode == "val":
                val = inputs.query
                f, yq, exclude = as_float64(val.features, dev), torch.from_numpy(val.labels).to(dev), False
            else:
                if F.shape[0] < 2:
                    raise SusxError(
                        "leave-one-out needs at least 2 support images", hint="curate more images"
                    )
                f, yq, exclude = F, y, True
            result = grid_search(f, yq, F, y, W, grid, exclude_self=exclude, progress=progress, **opts)
    values = {"alpha": result.alpha, "beta": result.beta, "gamma": result.gamma}
    return values, result.correct, result.total, result.counts
