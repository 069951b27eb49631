"""susx predict: classify queries -> predictions HDF5 + metrics table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from susx_cli.commands._common import build_options, options_command, run
from susx_cli.stages.options import PredictOptions

if TYPE_CHECKING:
    from susx_cli.stages.predict import PredictResult


@options_command(PredictOptions)
def predict(**values: Any) -> None:
    """Predict classes of query images; print top-1, top-5 and mean per-class recall (in %) when labels are known.

    Classes with exactly equal logits rank by the lower class index (the prediction, the top-5, every metric).

    Examples:

      susx predict text.h5 query.h5 -o zero-shot.h5

      susx predict text.h5 query.h5 -s support.h5 --calibration cal.json -o pred.h5

      susx predict text.h5 images/ --unlabelled -s support.h5 --calibration cal.json -o pred.h5

      susx predict text.h5 query.h5 --method tda --order-seeds 0,1,2 -o tda.h5
    """

    def stage():
        from susx_cli.stages.predict import predict as predict_stage

        return predict_stage(build_options(PredictOptions, values))

    run(stage, quiet=values["quiet"], as_json=values["as_json"], table=metrics_table)


METRIC_HEADERS = {"ece": "ECE (%)", "nll": "NLL (nats)"}


def metrics_table(result: PredictResult):
    """The metrics row (method, top-k accuracies, mean per-class recall, ECE, NLL, n; percent unless
    said), then the worst classes by recall; None without labels."""
    if not result.metrics:
        return None
    from rich.console import Group
    from rich.table import Table

    metrics = result.metrics
    stream = result.summary.get("order", "")
    order = ", file order (a diagnostic)" if stream.startswith("file") else ", seeded order" if stream else ""
    table = Table(title=f"susx predict: {result.summary.get('method')}{order} (accuracy and recall in %)")
    for col in ("method", *[k for k in metrics if k != "n"], "n"):
        table.add_column(METRIC_HEADERS.get(col, col), justify="right" if col != "method" else "left")
    table.add_row(
        result.summary.get("method", ""),
        *[f"{v:.2f}" for k, v in metrics.items() if k != "n"],
        str(metrics["n"]),
    )
    over = result.over_order_seeds
    if over:
        seeds = Table(title="over the order seeds: mean ± std")
        for name in over:
            seeds.add_column(METRIC_HEADERS.get(name, name), justify="right")
        seeds.add_row(*[f"{v['mean']:.2f} ± {v['std']:.2f}" for v in over.values()])
        table = Group(table, seeds)
    worst = result.worst_classes
    return Group(table, worst_classes_table(worst)) if worst else table


def worst_classes_table(rows: list[dict[str, Any]]):
    """Worst classes by recall: class, recall (%), queries, support images, most frequent wrong prediction."""
    from rich.table import Table

    table = Table(title=f"worst {len(rows)} classes by recall")
    for col in ("class", "recall (%)", "queries", "support", "most often predicted as"):
        table.add_column(col, justify="left" if col in ("class", "most often predicted as") else "right")
    for r in rows:
        other = r["confused_with"]
        table.add_row(
            f"{r['class']}: {r['name']}",
            f"{r['recall']:.2f}",
            str(r["queries"]),
            "-" if r["support"] is None else str(r["support"]),
            "-" if other is None else f"{other['name']} ({other['count']})",
        )
    return table
