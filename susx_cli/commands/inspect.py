"""susx inspect: print what any artifact holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from susx_cli.commands._common import build_options, options_command, run
from susx_cli.stages.options import InspectOptions

if TYPE_CHECKING:
    from susx_cli.stages.results import InspectResult


@options_command(InspectOptions)
def inspect(**values: Any) -> None:
    """Describe an artifact: kind, shapes, model, classes and provenance (JSON with --json); with a picture
    option, draw it and print its path alone on stdout.

    Examples:

      susx inspect text.h5

      susx inspect support/ --contact-sheet sheet.png

      susx inspect pred.h5 --confusion confusion.png

      susx inspect sup.h5 --influence --text text.h5 --contact-sheet worst.png
    """

    def stage() -> InspectResult:
        from susx_cli.stages.inspect import inspect as inspect_stage

        options = build_options(InspectOptions, values)
        result = inspect_stage(options)
        if not result.outputs:  # a picture's path stands alone on stdout
            result.text = "\n".join(
                ranked_lines(result) if options.influence else describe_lines(result.description)
            )
        return result

    influence = values["influence"]
    run(stage, quiet=values["quiet"], as_json=values["as_json"], table=influence_table if influence else None)


def ranked_lines(result: InspectResult) -> list[str]:
    """Support influence on stdout: one ``change<TAB>class<TAB>key`` line per image, worst first (``cut -f3``
    of the lines wanted is an --exclude file)."""
    return [f"{r['delta']:+.4f}\t{r['class']}\t{r['key']}" for r in result.description["images"]]


def influence_table(result: InspectResult, rows: int = 10) -> Any:
    """The images whose removal most raises their class's leave-one-out top-1."""
    from rich.table import Table

    d = result.description
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
