"""susx datasets list|check|prepare: the paper's 19 datasets, whether a local copy is complete, and
making the registry's layout from a download."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from susx_cli.commands._common import (
    JsonOpt,
    OverwriteOpt,
    QuietOpt,
    input_argument,
    input_option,
    output_option,
    run,
)
from susx_cli.stages.results import StageResult

app = typer.Typer(
    help="The paper's 19 datasets: list them, check a local copy, prepare one from its download.",
    no_args_is_help=True,
)


@dataclass
class _ListResult(StageResult):
    stage: str = field(default="datasets", init=False)
    specs: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.text = "\n".join(s.id for s in self.specs)

    def to_json(self) -> dict[str, Any]:
        return {"datasets": [s.to_json() for s in self.specs]}

    def table(self) -> Any:
        from rich.table import Table

        table = Table(title="susx datasets (the SuS-X paper's 19)")
        for col in (
            "id",
            "name",
            "classes",
            "layout",
            "calibrated on",
            "photo template",
            "paper (RN50 top-1, quoted; sources: --json)",
            "needs",
        ):
            table.add_column(col)
        for s in self.specs:
            paper = ", ".join(f"{k} {v:.2f}" for k, v in s.paper.items()) or "—"
            table.add_row(
                s.id,
                s.name,
                str(s.num_classes),
                s.layout,
                s.calibration_split,
                s.photo_template,
                paper,
                s.needs(),
            )
        return table


@dataclass
class _CheckResult(StageResult):
    stage: str = field(default="datasets", init=False)
    local: Any = None

    def __post_init__(self) -> None:
        self.text = f"{self.local.spec.id}: ready ({'; '.join(self.local.notes)})"

    def to_json(self) -> dict[str, Any]:
        lo = self.local
        return {
            "dataset": lo.spec.id,
            "complete": not lo.problems,
            "root": str(lo.root),
            "classes": len(lo.classes),
            "splits": {k: len(v) for k, v in lo.splits.items()},
            "problems": lo.problems,
            "notes": lo.notes,
        }


@app.command("list")
def list_(quiet: QuietOpt = False, as_json: JsonOpt = False) -> None:
    """The paper's 19 datasets: classes, local layout, the split the paper calibrated on, photo template.

    Examples:

      susx datasets list

      susx datasets list --json
    """

    def stage():
        from susx_cli.datasets.registry import DATASETS

        return _ListResult([], specs=list(DATASETS.values()))

    run(stage, quiet=quiet, as_json=as_json, table=_ListResult.table)


@app.command("check")
def check(
    root: Annotated[Path, input_argument(help="Data root holding one folder per dataset.")],
    name: Annotated[str, typer.Argument(help="Dataset id (susx datasets list).")],
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Say whether ROOT holds a complete copy of NAME (split file, every image, class list); exit 1 if not.

    Examples:

      susx datasets check DATA dtd

      susx datasets check DATA imagenet --json
    """

    def stage():
        from susx_cli.datasets import registry
        from susx_cli.errors import SusxError
        from susx_cli.progress import warn

        spec = registry.get(name)
        local = registry.check_local(spec, root)
        if local.problems:
            if as_json:
                import json
                import sys

                sys.stdout.write(json.dumps(_CheckResult([], local=local).to_json()) + "\n")
            for extra in local.problems[1:]:
                warn(extra)
            raise SusxError(
                f"{spec.id}: incomplete under {local.root}: {local.problems[0]}",
                hint=f"{spec.name} needs {spec.needs()}",
                exit_code=1,
            )
        return _CheckResult([], local=local)

    run(stage, quiet=quiet, as_json=as_json)


@app.command("prepare")
def prepare(
    name: Annotated[str, typer.Argument(help="Dataset id (susx datasets list).")],
    source: Annotated[
        Path, input_option("--from", help="The dataset as downloaded from its usual source (a folder).")
    ],
    data_root: Annotated[
        Path, output_option("--output", "-o", help="Data root: the dataset goes into its folder under it.")
    ] = Path("."),
    published: Annotated[
        Path | None,
        input_option(
            "--split-file",
            help="The SuS-X authors' split (caltech256, cub, birdsnap), reproduced row for row; "
            "paths in it start at --from.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the seeded train/val/test split.")] = 0,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Turn a download (CIFAR pickles, Caltech-256, CUB, Birdsnap, Country211, ImageNet-R) into the layout
    `datasets check` and `eval` read: a split file, PNG files for CIFAR, a marker written last.

    A rerun with the same download and options is skipped; an interrupted one resumes.

    Examples:

      susx datasets prepare cifar10 --from downloads/cifar10 -o DATA

      susx datasets prepare cub --from downloads/CUB_200_2011 -o DATA --split-file split_CUB.json
    """

    def stage():
        from susx_cli.stages.prepare import prepare_dataset

        return prepare_dataset(
            name, source, data_root, published_split=published, seed=seed, overwrite=overwrite
        )

    run(stage, quiet=quiet, as_json=as_json)
