"""`export`: a predictions file as a CSV table, one row per query: its key, true and predicted class names,
and the top-5 class names with their scores (the method's final logits, scale included)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from susx_cli.artifacts import hdf5, tables
from susx_cli.errors import SusxError
from susx_cli.stages.options import ExportOptions
from susx_cli.stages.results import ExportResult


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
    """Write one CSV row per query of ``options.predictions`` into ``options.output``."""
    path, output, overwrite = options.predictions, options.output, options.overwrite
    preds = hdf5.read_predictions(path)  # a bad input fails before anything is written
    if output.resolve() == path.resolve():
        raise SusxError(f"{output} is the predictions file itself", hint="choose another -o, e.g. preds.csv")
    if output.exists() and not overwrite:
        raise SusxError(f"{output} exists", hint="pass --overwrite to replace it, or choose another -o")
    if output.is_dir():
        raise SusxError(f"{output} is a folder", hint="give -o a file name, e.g. preds.csv")
    rows = tables.write_csv(output, prediction_header(preds.top5.shape[1]), prediction_rows(preds))
    return ExportResult(
        [output], summary={"rows": rows, "classes": len(preds.classes), "method": preds.method}
    )
