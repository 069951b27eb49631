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
    """

    def stage() -> InspectResult:
        from susx_cli.stages.inspect import inspect as inspect_stage

        result = inspect_stage(build_options(InspectOptions, values))
        if not result.outputs:  # a picture's path stands alone on stdout
            result.text = "\n".join(describe_lines(result.description))
        return result

    run(stage, quiet=values["quiet"], as_json=values["as_json"])


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
