"""susx demo: run every stage end to end in a fresh folder (offline by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from susx_cli.commands._common import build_options, options_command, run
from susx_cli.stages.options import DemoOptions

if TYPE_CHECKING:
    from rich.table import Table

    from susx_cli.stages.results import DemoResult


@options_command(DemoOptions)
def demo(**values: Any) -> None:
    """Run prompts -> curate -> embed -> calibrate -> predict and print the final table (scores in %).

    Examples:

      susx demo

      susx demo -o demo-real -m ViT-B-32:openai --sd-model stabilityai/sd-turbo
    """

    def stage():
        from susx_cli.stages.demo import demo as demo_stage

        return demo_stage(build_options(DemoOptions, values))

    run(stage, quiet=values["quiet"], as_json=values["as_json"], table=demo_table)


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
