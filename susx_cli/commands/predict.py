"""susx predict: classify queries -> predictions HDF5 + metrics table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from susx_cli.commands._common import (
    DeviceOpt,
    JsonOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    choice,
    input_argument,
    input_option,
    parse_seeds,
    run,
)
from susx_cli.method import registry


def predict(
    text: Annotated[Path, input_argument(help="Text classifier HDF5.")],
    query: Annotated[
        Path, input_argument(help="Query features HDF5, or images (folder / split JSON) to embed now.")
    ],
    output: OutputOpt = Path("predictions.h5"),
    support: Annotated[
        Path | None,
        input_option("--support", "-s", help="Support features HDF5 (methods that read a support set)."),
    ] = None,
    calibration: Annotated[Path | None, input_option("--calibration", help="calibration.json.")] = None,
    method: Annotated[
        choice(registry.names()) | None,
        typer.Option("--method", help="Default: the calibration's (zero-shot without one)."),
    ] = None,
    split: Annotated[str | None, typer.Option("--split", help="Images: split of a split JSON.")] = None,
    image_root: Annotated[
        Path | None, input_option("--image-root", help="Images: root of the split's paths.")
    ] = None,
    unlabelled: Annotated[
        bool, typer.Option("--unlabelled", help="Images: a folder without labels.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, help="Images: embedding batch size.")
    ] = 64,
    order: Annotated[
        choice(("seeded", "file")),
        typer.Option(
            "--order",
            help="Online test-time methods: the query stream, seeded permutations or the file order "
            "(a diagnostic: class folders come grouped by class).",
            rich_help_panel="Test-time methods",
        ),
    ] = "seeded",
    order_seed: Annotated[
        list[int] | None,
        typer.Option(
            "--order-seed",
            help="Seed of the stream (torch.randperm under torch.Generator().manual_seed), repeatable; "
            "default 0. Several: the file holds the first seed's predictions, the metrics of each and "
            "their mean and std.",
            rich_help_panel="Test-time methods",
        ),
    ] = None,
    order_seeds: Annotated[
        str | None,
        typer.Option(
            "--order-seeds", help="Seeds as a list, e.g. 0,1,2.", rich_help_panel="Test-time methods"
        ),
    ] = None,
    tda_preset: Annotated[
        choice(("default", "paper")) | None,
        typer.Option(
            "--tda-preset",
            help="TDA's alpha+, beta+: default (2, 5) on every dataset, or paper: the official per-dataset "
            "values, which were tuned on test labels (needs --dataset).",
            rich_help_panel="Test-time methods",
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", help="--tda-preset paper: the dataset id.", rich_help_panel="Test-time methods"
        ),
    ] = None,
    device: DeviceOpt = "auto",
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Predict classes of query images; print top-1, top-5 and mean per-class recall (in %) when labels are known.

    Classes with exactly equal logits rank by the lower class index (the prediction, the top-5, every metric).

    Examples:

      susx predict text.h5 query.h5 -o zero-shot.h5

      susx predict text.h5 query.h5 -s support.h5 --calibration cal.json -o pred.h5

      susx predict text.h5 images/ --unlabelled -s support.h5 --calibration cal.json -o pred.h5

      susx predict text.h5 query.h5 --method tda --order-seeds 0,1,2 -o tda.h5
    """

    def stage():
        from susx_cli.stages.predict import StreamOptions
        from susx_cli.stages.predict import predict as predict_stage

        embed_options = {
            "split": split,
            "image_root": image_root,
            "unlabelled": unlabelled,
            "batch_size": batch_size,
            "device": device,
        }
        return predict_stage(
            text,
            query,
            output,
            support_path=support,
            calibration_path=calibration,
            method=method,
            embed_options=embed_options,
            device=device,
            overwrite=overwrite,
            stream=StreamOptions(
                seeds=tuple(order_seed or ()) + parse_seeds(order_seeds),
                file_order=str(order) == "file",
                preset=None if tda_preset is None else str(tda_preset),
                dataset=dataset,
            ),
        )

    run(stage, quiet=quiet, as_json=as_json, table=metrics_table)


METRIC_HEADERS = {"ece": "ECE (%)", "nll": "NLL (nats)"}


def metrics_table(result: Any):
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
    over = getattr(result, "over_order_seeds", None)
    if over:
        seeds = Table(title="over the order seeds: mean ± std")
        for name in over:
            seeds.add_column(METRIC_HEADERS.get(name, name), justify="right")
        seeds.add_row(*[f"{v['mean']:.2f} ± {v['std']:.2f}" for v in over.values()])
        table = Group(table, seeds)
    worst = getattr(result, "worst_classes", None)
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
