"""susx demo: run every stage end to end in a fresh folder (offline by default)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from susx_cli.commands._common import JsonOpt, OverwriteOpt, QuietOpt, output_option, run

if TYPE_CHECKING:
    from rich.table import Table

    from susx_cli.stages.demo import DemoResult


def demo(
    output: Annotated[
        Path, output_option("--output", "-o", help="A fresh folder for every artifact.")
    ] = Path("demo-run"),
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Real open_clip model, ARCH or ARCH:TAG (default: tiny random)."),
    ] = None,
    pretrained: Annotated[
        str | None, typer.Option("--pretrained", "-p", help="Weights for --model, e.g. openai.")
    ] = None,
    sd_model: Annotated[
        str | None, typer.Option("--sd-model", help="diffusers model id or folder (default: tiny random).")
    ] = None,
    per_class: Annotated[int, typer.Option("--per-class", help="Generated support images per class.")] = 4,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run prompts -> curate -> embed -> calibrate -> predict and print the final table (scores in %).

    Examples:

      susx demo

      susx demo -o demo-real -m ViT-B-32:openai --sd-model stabilityai/sd-turbo
    """

    def stage():
        from susx_cli.model_spec import resolve_model
        from susx_cli.stages.demo import run_demo

        arch, weights = resolve_model(model, pretrained, default=None) if model else (None, pretrained)
        return run_demo(
            output,
            model=arch,
            pretrained=weights,
            sd_model=sd_model,
            per_class=per_class,
            overwrite=overwrite,
        )

    run(stage, quiet=quiet, as_json=as_json, table=demo_table)


def demo_table(result: DemoResult) -> Table:
    """One row per (support set, method): top-1 and mean per-class recall in %."""
    from rich.table import Table

    title = "susx demo" + (
        " — RANDOM WEIGHTS: figures only show that the pipeline runs" if result.random_weights else ""
    )
    table = Table(title=title)
    for col in ("support", "method", "calibration", "top1", "mean per-class recall"):
        table.add_column(col)
    for r in result.rows:
        table.add_row(
            r["support"],
            r["method"],
            r["calibration"],
            f"{r['top1']:.1f}",
            f"{r['mean_per_class_recall']:.1f}",
        )
    return table
