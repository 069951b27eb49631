"""susx calibrate: choose a method's hyperparameters -> calibration.json. The methods and their options come
from the method registry (method/registry.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from susx_cli.commands._common import (
    CALIBRATION_MODES,
    REPLACES_OWN,
    DeviceOpt,
    JsonOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    choice,
    input_argument,
    input_option,
    method_values,
    output_option,
    run,
    with_method_options,
)
from susx_cli.method import registry


def _readers(has) -> str:
    """The registered methods for which ``has(spec)`` holds, for an option's help."""
    return ", ".join(n for n, spec in registry.METHODS.items() if has(spec))


def calibrate(
    text: Annotated[Path, input_argument(help="Text classifier HDF5 (susx embed prompts.json).")],
    support: Annotated[Path, input_argument(help="Support features HDF5 (susx embed SUPPORT_DIR).")],
    output: OutputOpt = Path("calibration.json"),
    mode: Annotated[
        choice(CALIBRATION_MODES) | None,
        typer.Option(
            "--mode",
            help="loo: leave-one-out on the support set (name-only); kfold: k-fold on the support set "
            "(name-only); val: labelled --val; fixed: the values given. Default: val with --val, else the "
            "method's name-only mode.",
        ),
    ] = None,
    val: Annotated[
        Path | None, input_option("--val", help="Labelled validation features (mode val).")
    ] = None,
    method: Annotated[
        choice(registry.calibrated_names()),
        typer.Option("--method", help="The method whose hyperparameters to choose; its options are below."),
    ] = "tip-x",
    tau: Annotated[
        float | None,
        typer.Option(
            "--tau",
            help=f"Signature temperature on raw cosines ({_readers(lambda s: 'tau' in s.settings)}; default 0.5).",
        ),
    ] = None,
    logit_scale: Annotated[
        str, typer.Option("--logit-scale", help="Zero-shot scale: 100 (reference) or 'model'.")
    ] = "100",
    normalize: Annotated[
        bool,
        typer.Option(
            "--normalize-per-class",
            help=f"Divide support terms by class size ({_readers(lambda s: 'normalize' in s.settings)}).",
        ),
    ] = False,
    heatmap: Annotated[
        Path | None,
        output_option(
            "--heatmap",
            help=f"{_readers(lambda s: s.heatmap)}: PNG of accuracy over (alpha, gamma) at the chosen beta."
            + REPLACES_OWN,
        ),
    ] = None,
    folds: Annotated[
        int | None, typer.Option("--folds", help="kfold: number of folds of the support set (default 4).")
    ] = None,
    fold_seed: Annotated[
        int | None, typer.Option("--fold-seed", help="kfold: seed of the stratified fold split (default 0).")
    ] = None,
    device: DeviceOpt = "auto",
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    **hyperparameters: Any,
) -> None:
    """Choose a method's hyperparameters and write calibration.json; print the chosen values and
    the objective (top-1 in %) on stderr.

    Examples:

      susx calibrate text.h5 support.h5 -o cal.json

      susx calibrate text.h5 support.h5 --mode val --val val.h5 --heatmap heat.png -o cal.json

      susx calibrate text.h5 support.h5 --method gda --mode fixed --gda-alpha 0.1 -o cal-gda.json
    """

    def stage():
        from susx_cli.stages.calibrate import calibrate as calibrate_stage

        values, grids = method_values(method, hyperparameters)
        return calibrate_stage(
            text,
            support,
            output,
            method=method,
            mode=mode,
            val_path=val,
            values=values,
            grids=grids,
            tau=tau,
            logit_scale=logit_scale,
            normalize=normalize,
            heatmap=heatmap,
            folds=folds,
            fold_seed=fold_seed,
            device=device,
            overwrite=overwrite,
        )

    run(stage, quiet=quiet, as_json=as_json, table=choice_table)


def choice_table(result: Any):
    """The chosen hyperparameters and the objective they reached (top-1 in %; '-' for fixed values)."""
    from rich.table import Table

    s = result.summary
    values = s["hyperparameters"]
    table = Table(title=f"susx calibrate: {s['method']} ({s['mode']})", title_justify="left")
    for col in ("method", "mode", *values, "top1 (%)", "objective on"):
        table.add_column(col, justify="left" if col in ("method", "mode", "objective on") else "right")
    top1 = "-" if s["top1"] is None else f"{s['top1']:.2f}"
    table.add_row(
        s["method"], s["mode"], *[f"{v:g}" for v in values.values()], top1, s.get("objective_on") or "-"
    )
    return table


with_method_options(calibrate)
