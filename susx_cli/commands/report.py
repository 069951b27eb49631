"""susx report: result files of susx eval -> the paper's table (Markdown, CSV), a long table and charts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from susx_cli.commands._common import (
    METRICS,
    REPLACES_OWN,
    JsonOpt,
    QuietOpt,
    choice,
    input_argument,
    output_option,
    run,
)

FORMATS = ("markdown", "csv", "latex")  # stages/report.FORMATS; the stage is imported only when it runs


def report(
    results: Annotated[
        list[Path], input_argument(help="Result JSON files or folders of them (susx eval --results-dir).")
    ],
    output: Annotated[
        Path | None,
        output_option("--output", "-o", help="Write the table here (default: print it)." + REPLACES_OWN),
    ] = None,
    fmt: Annotated[
        choice(FORMATS),
        typer.Option(
            "--format",
            "-f",
            help="The table's format: markdown, csv (mean, std, n, failed per dataset) or latex.",
        ),
    ] = "markdown",
    chart: Annotated[
        Path | None,
        output_option(
            "--chart",
            help="PNG: few-shot curves over shots; bars for name-only support sets (both: NAME-shots.png, NAME-name-only.png)."
            + REPLACES_OWN,
        ),
    ] = None,
    long_path: Annotated[
        Path | None,
        output_option(
            "--long",
            help="Long CSV: one row per run, every metric and configuration field (dotted names)."
            + REPLACES_OWN,
        ),
    ] = None,
    metric: Annotated[
        choice(METRICS), typer.Option("--metric", help="The score in the tables and chart (percent).")
    ] = "top1",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Join result files into datasets-as-columns, methods-as-rows tables with a mean column and the paper's
    figures (scores in %). Runs that differ only by seed share a cell: mean ± std (n=N); failed runs are
    counted in their cells.

    Examples:

      susx report susx-results

      susx report susx-results -o table.md --chart chart.png

      susx report susx-results -f latex -o table.tex

      susx report susx-results --metric mean_per_class_recall --long runs.csv
    """

    def stage():
        from susx_cli.stages.report import report as report_stage

        return report_stage(
            list(results), output=output, fmt=fmt, chart=chart, long_path=long_path, metric=metric
        )

    run(stage, quiet=quiet, as_json=as_json)
