"""susx export: a predictions file -> a CSV table (one row per query)."""

from __future__ import annotations

from typing import Any

from susx_cli.commands._common import build_options, options_command, run
from susx_cli.stages.options import ExportOptions


@options_command(ExportOptions)
def export(**values: Any) -> None:
    """Write one CSV row per query: key (path), true and predicted class names, top-5 class names and scores.

    Scores are the method's final logits (its scale included: 100 x cosine for zero-shot); equal scores are
    listed by the lower class index. The true class is empty for unlabelled queries. A file that already holds
    this table is left as it is; one holding another is kept unless --overwrite is given.

    Examples:

      susx export predictions.h5 -o preds.csv

      susx export predictions.h5 -o preds.csv --overwrite --json

      susx export predictions.h5 -o - | head
    """

    def stage():
        from susx_cli.errors import SusxError
        from susx_cli.stages.export import STDOUT
        from susx_cli.stages.export import export as export_stage

        options = build_options(ExportOptions, values)
        if values["as_json"] and str(options.output) == STDOUT:
            raise SusxError("-o - writes the table to stdout, where --json would also go", hint="drop --json")
        return export_stage(options)

    run(stage, quiet=values["quiet"], as_json=values["as_json"])
