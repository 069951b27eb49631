"""susx export: a predictions file -> a CSV table (one row per query)."""

from __future__ import annotations

from typing import Any

from susx_cli.commands._common import build_options, options_command, run
from susx_cli.stages.options import ExportOptions


@options_command(ExportOptions)
def export(**values: Any) -> None:
    """Write one CSV row per query: key (path), true and predicted class names, top-5 class names and scores.

    Scores are the method's final logits (its scale included: 100 x cosine for zero-shot); equal scores are
    listed by the lower class index. The true class is empty for unlabelled queries. An existing file is kept unless --overwrite is given.

    Examples:

      susx export predictions.h5 -o preds.csv

      susx export predictions.h5 -o preds.csv --overwrite --json
    """

    def stage():
        from susx_cli.stages.export import export as export_stage

        return export_stage(build_options(ExportOptions, values))

    run(stage, quiet=values["quiet"], as_json=values["as_json"])
