"""susx inspect: print what any artifact holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from susx_cli.commands._common import (
    REPLACES_OWN,
    JsonOpt,
    QuietOpt,
    input_argument,
    input_option,
    output_option,
    run,
)


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
    influence: Annotated[
        bool,
        typer.Option(
            "--influence",
            help="Support features: how each image changes its class's leave-one-out top-1 when left "
            "out, worst first (no query labels; with --contact-sheet, the worst images drawn).",
            rich_help_panel="Support influence",
        ),
    ] = False,
    text: Annotated[
        Path | None,
        input_option("--text", help="--influence: the text classifier.", rich_help_panel="Support influence"),
    ] = None,
    calibration: Annotated[
        Path | None,
        input_option(
            "--calibration",
            help="--influence: a Tip-Adapter or TIP-X calibration (default: TIP-X's default values).",
            rich_help_panel="Support influence",
        ),
    ] = None,
    support_folder: Annotated[
        Path | None,
        input_option(
            "--support-folder",
            help="--influence: the support folder of the features (default: the one they record).",
            rich_help_panel="Support influence",
        ),
    ] = None,
    worst: Annotated[
        int,
        typer.Option(
            "--worst", help="--influence: images on the contact sheet.", rich_help_panel="Support influence"
        ),
    ] = 24,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Describe an artifact: kind, shapes, model, classes and provenance (JSON with --json); with a picture
    option, draw it and print its path alone on stdout.

    Examples:

      susx inspect text.h5

      susx inspect support/ --contact-sheet sheet.png

      susx inspect pred.h5 --confusion confusion.png

      susx inspect sup.h5 --influence --text text.h5 --contact-sheet worst.png
    """
    if influence or text is not None or calibration is not None or support_folder is not None:
        return _influence(
            path, text, calibration, support_folder, worst, contact_sheet, influence, quiet, as_json
        )

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


def _influence(path, text, calibration, support_folder, worst, sheet, asked, quiet, as_json) -> None:
    """``--influence``: the ranked support images (TSV on stdout: change, class, key), a table of the
    worst on stderr; with --contact-sheet, the sheet's path alone on stdout."""

    def stage():
        from susx_cli.errors import SusxError
        from susx_cli.stages.inspect import support_influence

        if not asked:
            raise SusxError(
                "--text, --calibration and --support-folder go with --influence", hint="add --influence"
            )
        if text is None:
            raise SusxError("--influence needs the text classifier", hint="add --text text.h5")
        return _Ranked(
            support_influence(
                path, text, calibration=calibration, sheet=sheet, support_folder=support_folder, worst=worst
            )
        )

    run(stage, quiet=quiet, as_json=as_json, table=influence_table)


def influence_table(result: Any, rows: int = 10) -> Any:
    """The images whose removal most raises their class's leave-one-out top-1."""
    from rich.table import Table

    d = result.to_json()
    table = Table(
        title=f"support influence ({d['method']}, {d['from']}): leave-one-out top-1 "
        f"{100 * d['leave_one_out_top1']:.1f}%, {d['hurting']} of {len(d['images'])} images lower their class's",
        title_justify="left",
    )
    for col in ("change (pts)", "class", "key"):
        table.add_column(col, justify="right" if col.startswith("change") else "left")
    for r in d["images"][:rows]:
        table.add_row(f"{100 * r['delta']:+.1f}", r["class"][:40], r["key"])
    return table


class _Ranked:
    """A support-influence result whose stdout is one ``change<TAB>class<TAB>key`` line per image, worst
    first (``cut -f3`` of the lines wanted is an --exclude file); a picture's path stays alone."""

    def __init__(self, result: Any):
        self.outputs, self._result = result.outputs, result

    @property
    def text(self) -> str:
        if self.outputs:
            return ""
        return "\n".join(
            f"{r['delta']:+.4f}\t{r['class']}\t{r['key']}" for r in self._result.description["images"]
        )

    def to_json(self) -> dict[str, Any]:
        return self._result.to_json()


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
