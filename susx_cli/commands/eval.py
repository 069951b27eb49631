"""susx eval: datasets x models x support sets x methods x calibrations -> one result JSON per run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from susx_cli.artifacts.prompts import POOLS
from susx_cli.commands._common import (
    CALIBRATION_MODES,
    BatchSizeOpt,
    DeviceOpt,
    ExecutorOpt,
    JsonOpt,
    OverwriteOpt,
    PrecisionOpt,
    QuietOpt,
    RayAddressOpt,
    WorkersOpt,
    choice,
    input_option,
    output_option,
    plain,
    repeatable_choice,
    run,
    with_method_options,
)
from susx_cli.method import registry

_Method = repeatable_choice("Method", registry.names())
_Calibration = repeatable_choice("Calibration", CALIBRATION_MODES)


def eval_(
    ctx: typer.Context,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            "-d",
            help="Dataset id (susx datasets list), group (coop11, paper19) or a dataset file DATASET.json: class list + split file, class folders or path,label CSVs per split (repeatable).",
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="open_clip architecture, or ARCH:TAG (repeatable)."),
    ] = None,
    pretrained: Annotated[
        list[str] | None,
        typer.Option("--pretrained", "-p", help="Weights per --model, by position (repeatable)."),
    ] = None,
    data_root: Annotated[
        Path | None, input_option("--data-root", help="Folder holding one folder per registered dataset.")
    ] = None,
    support: Annotated[
        list[str] | None,
        typer.Option(
            "--support",
            "-s",
            help="folder-shots:K (K train images per class) or a support folder made by susx curate (repeatable).",
        ),
    ] = None,
    method: Annotated[
        list[_Method] | None,
        typer.Option("--method", help="Repeatable; default: the paper's three, without gda."),
    ] = None,
    calibration: Annotated[
        list[_Calibration] | None,
        typer.Option(
            "--calibration", help="Repeatable; default loo; gda has no loo: it runs val, kfold, fixed."
        ),
    ] = None,
    work_dir: Annotated[
        Path, output_option("--work-dir", help="Where the stage artifacts go (reused across runs).")
    ] = Path("susx-work"),
    results_dir: Annotated[Path, output_option("--results-dir", help="One result JSON per run.")] = Path(
        "susx-results"
    ),
    templates: Annotated[
        str, typer.Option("--templates", help="photo | ensemble | openai | FILE.")
    ] = "ensemble",
    cupl_dir: Annotated[
        Path | None, input_option("--cupl-dir", help="CuPL sentence files named <dataset>.json.")
    ] = None,
    prompts: Annotated[
        Path | None, input_option("--prompts", help="An existing prompts.json (one --dataset only).")
    ] = None,
    pool: Annotated[
        choice(POOLS) | None, typer.Option("--pool", help="Text pool (default: the prompts').")
    ] = None,
    logit_scale: Annotated[
        str, typer.Option("--logit-scale", help="Zero-shot term scale: 100 (reference) or 'model'.")
    ] = "100",
    tau: Annotated[float, typer.Option("--tau", help="Signature temperature.")] = 0.5,
    folds: Annotated[
        int | None, typer.Option("--folds", help="--calibration kfold: folds of the support set (default 4).")
    ] = None,
    fold_seed: Annotated[
        int | None,
        typer.Option("--fold-seed", help="--calibration kfold: seed of the fold split (default 0)."),
    ] = None,
    seeds: Annotated[
        str,
        typer.Option(
            "--seeds", help="Seeds of the few-shot sample and its augmented views, one run each: 0,1,2."
        ),
    ] = "0",
    augment_passes: Annotated[
        int,
        typer.Option(
            "--augment-passes",
            help="folder-shots support: augmented views per image, averaged (the paper's 10); support folders: 1.",
        ),
    ] = 10,
    order_seeds: Annotated[
        str | None,
        typer.Option(
            "--order-seeds",
            help="Online test-time methods: seeds of the query stream, e.g. 0,1,2 (default 0); each is run, "
            "the result holds the mean and each seed's figures.",
            rich_help_panel="Test-time methods",
        ),
    ] = None,
    tda_preset: Annotated[
        choice(("default", "paper")) | None,
        typer.Option(
            "--tda-preset",
            help="TDA's alpha+, beta+: default (2, 5) on every dataset, or paper: the official per-dataset "
            "values, which were tuned on test labels.",
            rich_help_panel="Test-time methods",
        ),
    ] = None,
    batch_size: BatchSizeOpt = 64,
    workers: WorkersOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    overwrite: OverwriteOpt = False,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going",
            help="Record a failed dataset or run (a result with status failed and the error) and go on; exit 1 at the end.",
        ),
    ] = False,
    # The plan as a whole.
    config: Annotated[
        Path | None,
        input_option(
            "--config",
            help="A sweep file (TOML) naming datasets, models, methods, modes, shots, seeds, ...; an option set there and here is an error.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the run table and check the plan (data, splits, shots, disk); compute nothing.",
        ),
    ] = False,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    **hyperparameters: Any,
) -> None:
    """Benchmark: run every stage per dataset and model, reusing matching artifacts; skip finished runs.

    Every dataset is checked before any is computed. Scores are in %.

    Examples:

      susx eval -d dtd -m RN50:openai --data-root DATA -s folder-shots:16

      susx eval -d dtd -d eurosat -m RN50:openai -s support-dtd --calibration loo --calibration val

      susx eval -d my-dataset.json -m ViT-B-32:openai --method zero-shot

      susx eval -d dtd -m RN50:openai --data-root DATA --method tda --order-seeds 0,1,2

      susx eval --config sweep.toml --dry-run
    """
    params = {k: v for k, v in locals().items() if k not in ("ctx", "quiet", "as_json", "hyperparameters")}
    outcome: dict[str, Any] = {}
    params.update(hyperparameters)
    params.update(method=plain(method), calibration=plain(calibration), tda_preset=plain_value(tda_preset))

    def stage():
        from susx_cli.stages.eval import eval_parameters

        result = eval_parameters(params, given=given_parameters(ctx))
        outcome["result"] = result
        return result

    run(stage, quiet=quiet, as_json=as_json, table=results_table)
    if outcome["result"].summary.get("failed"):
        raise typer.Exit(1)  # --keep-going: every run was tried and recorded, but not every run succeeded


def plain_value(value: Any) -> Any:
    """A choice's plain value (None stays None)."""
    return None if value is None else str(getattr(value, "value", value))


def given_parameters(ctx: typer.Context) -> list[str]:
    """The parameters the command line set explicitly (a sweep file may set only the others)."""
    given = []
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name == "COMMANDLINE":  # typer may ship its own click
            given.append(name)
    return given


def results_table(result: Any):
    """One row per run: dataset, model, method, support, calibration, top-1, mean recall, done/skipped."""
    if not result.rows:
        return None
    from rich.table import Table

    table = Table(title="susx eval")
    for col in (
        "dataset",
        "model",
        "method",
        "support",
        "seed",
        "calibration",
        "top1",
        "mean recall",
        "status",
    ):
        table.add_column(col, justify="right" if col in ("seed", "top1", "mean recall") else "left")
    for r in result.rows:
        table.add_row(
            r["dataset"],
            r["model"],
            r["method"],
            r["support"],
            "-" if r.get("seed") is None else str(r["seed"]),
            r["calibration"],
            *("-" if v != v else f"{v:.2f}" for v in (r["top1"], r["mean_per_class_recall"])),
            r["status"] + (f": {r['error']}" if r.get("error") and r["status"] == "refused" else ""),
        )
    return table


with_method_options(eval_)
