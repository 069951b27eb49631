"""susx inspect: print what any artifact holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from susx_cli.commands._common import REPLACES_OWN, JsonOpt, QuietOpt, input_argument, output_option, run


def inspect(
    path: Annotated[
        Path, input_argument(help="Any susx artifact: prompts.json, *.h5, support folder, calibration.json.")
    ],
    contact_sheet: Annotated[
        Path | None,
        output_option(
            "--contact-sheet", help="Support folder: draw a PNG grid of each class's images." + REPLACES_OWN
        ),
    ] = None,
    per_class: Annotated[int, typer.Option("--per-class", help="Images per class on the contact sheet.")] = 8,
    classes: Annotated[
        str | None,
        typer.Option(
            "--classes",
            help="Contact sheet: only these classes (names or indices, comma-separated, or a file of them).",
        ),
    ] = None,
    classes_per_page: Annotated[
        int,
        typer.Option(
            "--classes-per-page",
            help="Contact sheet: classes per page; more make sheet-001.png, sheet-002.png, ...",
        ),
    ] = 50,
    confusion: Annotated[
        Path | None,
        output_option(
            "--confusion",
            help="Predictions file: draw its confusion matrix (top confusions above 100 classes) as PNG."
            + REPLACES_OWN,
        ),
    ] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Describe an artifact: kind, shapes, model, classes and provenance (JSON with --json); with a picture
    option, draw it and print its path alone on stdout.

    Examples:

      susx inspect text.h5

      susx inspect support/ --contact-sheet sheet.png

      susx inspect pred.h5 --confusion confusion.png
    """

    def stage():
        from susx_cli.stages.inspect import inspect_artifact

        return _Described(
            inspect_artifact(
                path,
                contact_sheet=contact_sheet,
                per_class=per_class,
                confusion=confusion,
                classes=classes,
                classes_per_page=classes_per_page,
            )
        )

    run(stage, quiet=quiet, as_json=as_json)


class _Described:
    """An inspect result whose stdout text is a readable description (a picture's path stays alone)."""

    def __init__(self, result: Any):
        self.outputs, self.table, self._result = result.outputs, None, result

    @property
    def text(self) -> str:
        return "" if self.outputs else "\n".join(describe_lines(self._result.description))

    def to_json(self) -> dict[str, Any]:
        return self._result.to_json()


def describe_lines(value: Any, indent: str = "", list_items: int = 8) -> list[str]:
    """A description as indented ``key: value`` lines; a long list shows its length and first items."""
    lines: list[str] = []
    for key, item in value.items():
        if isinstance(item, dict) and item:
            lines += [f"{indent}{key}:", *describe_lines(item, indent + "  ", list_items)]
        elif isinstance(item, list) and any(isinstance(x, dict) for x in item):
            lines.append(f"{indent}{key}: {len(item)} item(s)")
            for x in item[:list_items]:
                lines += (
                    describe_lines(x, indent + "  - ", list_items)
                    if isinstance(x, dict)
                    else [f"{indent}  - {x}"]
                )
        elif isinstance(item, list) and len(item) > list_items:
            shown = ", ".join(map(str, item[:list_items]))
            lines.append(f"{indent}{key}: {len(item)} items: {shown}, ...")
        else:
            lines.append(f"{indent}{key}: {', '.join(map(str, item)) if isinstance(item, list) else item}")
    return lines
