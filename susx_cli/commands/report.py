"""susx report: result files of susx eval -> the paper's table (Markdown, CSV), a long table and charts."""

from __future__ import annotations

from typing import Any

from susx_cli.commands._common import build_options, options_command, run
from susx_cli.stages.options import ReportOptions


@options_command(ReportOptions)
def report(**values: Any) -> None:
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

        return report_stage(build_options(ReportOptions, values))

    run(stage, quiet=values["quiet"], as_json=values["as_json"])
