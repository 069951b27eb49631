"""`export`: a predictions file as a CSV table, one row per query: its key, true and predicted class names,
and the top-5 class names with their scores (the method's final logits, scale included)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from susx_cli.artifacts import hdf5, outputs, tables
from susx_cli.progress import info
from susx_cli.stages.options import ExportOptions
from susx_cli.stages.results import ExportResult

STDOUT = "-"  # -o - writes the table to standard output


def prediction_header(k: int) -> list[str]:
    """key, true, predicted, then top1, top1_score ... topk, topk_score."""
    return [
        "key",
        "true",
        "predicted",
        *[f"{name}{i}{suffix}" for i in range(1, k + 1) for name, suffix in (("top", ""), ("top", "_score"))],
    ]


def prediction_rows(preds: hdf5.Predictions) -> Iterator[list[str]]:
    """One row of strings per query; ``true`` is empty for an unlabelled query."""
    names = preds.classes
    for key, label, pred, top, scores in zip(
        preds.keys, preds.labels, preds.predicted, preds.top5, preds.scores, strict=True
    ):
        ranked = [cell for c, s in zip(top, scores, strict=True) for cell in (names[int(c)], format_score(s))]
        yield [key, names[int(label)] if label >= 0 else "", names[int(pred)], *ranked]


def format_score(value: np.floating) -> str:
    """The shortest decimal that reads back as the same float32 (scores are stored as float32)."""
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def export(options: ExportOptions) -> ExportResult:
    """Write one CSV row per query of ``options.predictions`` at ``options.output`` (``-`` for stdout); a
    file already holding exactly this table is kept."""
    path, output, overwrite = options.predictions, options.output, options.overwrite
    to_stdout = str(output) == STDOUT
    if not to_stdout:
        outputs.check_paths([path], [("-o/--output", output)])
    preds = hdf5.read_predictions(path)  # a bad input fails before anything is written
    header = prediction_header(preds.top5.shape[1])
    summary = {"classes": len(preds.classes), "method": preds.method}
    if to_stdout:
        text, rows = tables.csv_text(header, prediction_rows(preds), line_end="\n")
        return ExportResult([], summary={"rows": rows, **summary}, text=text.removesuffix("\n"))
    text, rows = tables.marked_csv_text(header, prediction_rows(preds), kind=outputs.PREDICTIONS_CSV)
    summary = {"rows": rows, **summary}
    if tables.holds_text(output, text):
        info(f"{output} is up to date (the same table); nothing to do")
        return ExportResult([output], skipped=True, summary=summary)
    outputs.claim(output, outputs.PREDICTIONS_CSV, overwrite=overwrite)
    with outputs.writing(output):
        tables.write_text(output, text)
    return ExportResult([output], summary=summary)
