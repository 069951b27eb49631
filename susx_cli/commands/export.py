"""susx export: a predictions file -> a CSV table (one row per query)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from susx_cli.commands._common import JsonOpt, OverwriteOpt, QuietOpt, input_argument, output_option, run


def export(
    predictions: Annotated[Path, input_argument(help="Predictions HDF5 written by susx predict.")],
    output: Annotated[Path, output_option("--output", "-o", help="CSV file to write.")] = Path(
        "predictions.csv"
    ),
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write one CSV row per query: key (path), true and predicted class names, top-5 class names and scores.

    Scores are the method's final logits (its scale included: 100 x cosine for zero-shot); equal scores are
    listed by the lower class index. The true class is empty for unlabelled queries. An existing file is kept unless --overwrite is given.

    Examples:

      susx export predictions.h5 -o preds.csv

      susx export predictions.h5 -o preds.csv --overwrite --json
    """

    def stage():
        from susx_cli.stages.export import export_predictions

        return export_predictions(predictions, output, overwrite=overwrite)

    run(stage, quiet=quiet, as_json=as_json)
