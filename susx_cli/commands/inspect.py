"""susx inspect: print what any artifact holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from susx_cli.commands._common import JsonOpt, QuietOpt, run


def inspect(
    path: Annotated[Path, typer.Argument(help="Any susx artifact: prompts.json, *.h5, support folder, calibration.json.")],
    contact_sheet: Annotated[
        Path | None, typer.Option("--contact-sheet", help="Support folder: draw a PNG grid of each class's images.")
    ] = None,
    per_class: Annotated[int, typer.Option("--per-class", help="Images per class on the contact sheet.")] = 8,
    classes: Annotated[
        str | None,
        typer.Option("--classes", help="Contact sheet: only these classes (names or indices, comma-separated, or a file of them)."),
    ] = None,
    classes_per_page: Annotated[
        int, typer.Option("--classes-per-page", help="Contact sheet: classes per page; more make sheet-001.png, sheet-002.png, ...")
    ] = 50,
    confusion: Annotated[
        Path | None,
        typer.Option("--confusion", help="Predictions file: draw its confusion matrix (top confusions above 100 classes) as PNG."),
    ] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Show kind, shapes, model, classes and provenance of an artifact (as JSON with --json); with a picture
    option, draw it and print its path alone."""

    def stage():
        from susx_cli.stages.inspect import inspect_artifact

        return inspect_artifact(path, contact_sheet=contact_sheet, per_class=per_class, confusion=confusion,
                                classes=classes, classes_per_page=classes_per_page)

    run(stage, quiet=quiet, as_json=as_json)
