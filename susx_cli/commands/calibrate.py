"""susx calibrate: choose TIP-X / Tip-Adapter / GDA hyperparameters -> calibration.json."""

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
    output_option,
    run,
)
from susx_cli.method import SEARCHABLE_METHODS


def calibrate(
    text: Annotated[Path, input_argument(help="Text classifier HDF5 (susx embed prompts.json).")],
    support: Annotated[Path, input_argument(help="Support features HDF5 (susx embed SUPPORT_DIR).")],
    output: OutputOpt = Path("calibration.json"),
    mode: Annotated[
        choice(CALIBRATION_MODES),
        typer.Option(
            "--mode",
            help="loo: leave-one-out on the support set (name-only; not gda); kfold: k-fold on the "
            "support set (name-only); val: labelled --val; fixed.",
        ),
    ] = "loo",
    val: Annotated[
        Path | None, input_option("--val", help="Labelled validation features (implies --mode val).")
    ] = None,
    method: Annotated[
        choice(SEARCHABLE_METHODS),
        typer.Option("--method", help="The method whose hyperparameters to choose."),
    ] = "tip-x",
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="fixed: cache term weight (gda: GDA term weight).")
    ] = None,
    beta: Annotated[float | None, typer.Option("--beta", help="fixed: cache sharpness.")] = None,
    gamma: Annotated[float | None, typer.Option("--gamma", help="fixed: KL term weight.")] = None,
    alpha_grid: Annotated[
        str, typer.Option("--alpha-grid", help="'reference', 'start:stop:steps' or 'v1,v2'.")
    ] = "reference",
    beta_grid: Annotated[str, typer.Option("--beta-grid")] = "reference",
    gamma_grid: Annotated[str, typer.Option("--gamma-grid")] = "reference",
    tau: Annotated[float, typer.Option("--tau", help="Signature temperature on raw cosines.")] = 0.5,
    logit_scale: Annotated[
        str, typer.Option("--logit-scale", help="Zero-shot scale: 100 (reference) or 'model'.")
    ] = "100",
    normalize: Annotated[
        bool, typer.Option("--normalize-per-class", help="Divide support terms by class size.")
    ] = False,
    heatmap: Annotated[
        Path | None,
        output_option(
            "--heatmap", help="PNG of accuracy over (alpha, gamma) at the best beta." + REPLACES_OWN
        ),
    ] = None,
    folds: Annotated[int, typer.Option("--folds", help="kfold: number of folds of the support set.")] = 4,
    fold_seed: Annotated[
        int, typer.Option("--fold-seed", help="kfold: seed of the stratified fold split.")
    ] = 0,
    device: DeviceOpt = "auto",
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Choose (alpha, beta, gamma), or GDA's alpha, and write calibration.json; print the chosen values and
    the objective (top-1 in %) on stderr.

    Examples:

      susx calibrate text.h5 support.h5 -o cal.json

      susx calibrate text.h5 support.h5 --mode val --val val.h5 --heatmap heat.png -o cal.json

      susx calibrate text.h5 support.h5 --method gda --mode kfold -o cal-gda.json
    """

    def stage():
        from susx_cli.stages.calibrate import calibrate as calibrate_stage

        return calibrate_stage(
            text,
            support,
            output,
            mode=mode,
            val_path=val,
            method=method,
            alpha=alpha,
            beta=beta,
            gamma=gamma,
            alpha_grid=alpha_grid,
            beta_grid=beta_grid,
            gamma_grid=gamma_grid,
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
    names = [k for k in ("alpha", "beta", "gamma") if k in s]
    table = Table(title=f"susx calibrate: {s['method']} ({s['mode']})", title_justify="left")
    for col in ("method", "mode", *names, "top1 (%)", "objective on"):
        table.add_column(col, justify="left" if col in ("method", "mode", "objective on") else "right")
    top1 = "-" if s["top1"] is None else f"{s['top1']:.2f}"
    table.add_row(s["method"], s["mode"], *[f"{s[k]:g}" for k in names], top1, s.get("objective_on") or "-")
    return table
