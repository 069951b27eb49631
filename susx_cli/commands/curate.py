"""susx curate: build a support set (image folder + manifest) from prompts.json.

The sources and their options come from ``susx_cli.sources.registry``: every option a source declares
becomes a flag here, in that source's help panel (or the shared one); the flags a user gave are handed
to the chosen source's options dataclass, which fills in the defaults and checks them.
"""

from __future__ import annotations

import inspect
import typing
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from susx_cli.commands._common import PRESENTATION, options_parameters, path_option, run
from susx_cli.options import cli_fields
from susx_cli.sources.registry import CliParam, cli_params
from susx_cli.stages.options import CurateOptions

if TYPE_CHECKING:
    from rich.table import Table

    from susx_cli.stages.results import CurateResult

_KW = inspect.Parameter.KEYWORD_ONLY


def _source_parameters() -> list[inspect.Parameter]:
    """The sources' options: the shared panel first, then one panel per source in registry order."""
    shared_first = sorted(cli_params(), key=lambda p: len(p.sources) == 1)
    return [
        inspect.Parameter(
            p.name,
            _KW,
            default=p.default,
            annotation=Annotated[_choice_type(p), _source_option(p)],
        )
        for p in shared_first
    ]


def _source_option(p: CliParam) -> Any:
    if p.path_role is not None:
        return path_option(p.path_role, *p.flags, help=p.help, rich_help_panel=p.panel)
    return typer.Option(*p.flags, help=p.help, rich_help_panel=p.panel)


def _choice_type(p: CliParam) -> Any:
    """The parameter's type, a Literal of its choices when it has a fixed set (typos fail in the parser)."""
    if p.choices is None:
        return p.type
    literal = Literal[p.choices]
    return literal | None if type(None) in typing.get_args(p.type) else literal


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user set the option (command line or environment), not left it at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def curate(ctx: typer.Context, **values: Any) -> None:
    """Build a support set with one sub-folder per class index and a manifest.

    Examples:

      susx curate prompts.json -o support --images train/ --shots 16

      susx curate prompts.json -o support --source sd -k 16 --preset fast

      susx curate prompts.json -o support --source pool --pool-images ~/images -k 16 --clip-model ViT-B-32:openai
    """
    general = {f.name: values[f.name] for f, _ in cli_fields(CurateOptions)}
    # Only what the user typed goes to the source: its options dataclass holds the defaults.
    given = {p.name: values[p.name] for p in cli_params() if _given(ctx, p.name)}

    def stage() -> CurateResult:
        from susx_cli.stages.curate import curate as curate_stage

        return curate_stage(CurateOptions(**general, source_values=given), quiet=values["quiet"])

    run(
        stage,
        quiet=values["quiet"],
        as_json=values["as_json"],
        table=lambda result: class_stats_table(values["source"], result),
    )


curate.__signature__ = inspect.Signature(
    [
        inspect.Parameter("ctx", _KW, annotation=typer.Context),
        *options_parameters(CurateOptions),
        *_source_parameters(),
        *PRESENTATION,
    ]
)


def class_stats_table(source: str, result: CurateResult) -> Table | None:
    """A retrieval source's per-class counts (its summary's ``class_stats``) with the success rate."""
    stats = result.summary.get("class_stats")
    if not stats or not stats["classes"]:
        return None
    from rich.table import Table

    mode = result.summary.get("mode")
    title = f"{source} ({mode}): downloads per class" if mode else f"{source}: images per class"
    table = Table(title=title, title_justify="left")
    for col in ("class", "candidates", "tried", "kept", "failed", "invalid", "dup", "success"):
        table.add_column(col, justify="left" if col == "class" else "right")
    wanted = stats["wanted"]
    for row in stats["classes"]:
        tried = row["tried"]
        rate = f"{100 * row['valid'] / tried:.0f}%" if tried else "-"
        kept = f"{row['kept']}/{wanted}"
        if row["kept"] < wanted:
            kept = f"[yellow]{kept}[/yellow]"
        table.add_row(
            row["class"][:40],
            str(row["candidates"]),
            str(tried),
            kept,
            str(row["failed"]),
            str(row["invalid"]),
            str(row["duplicate"]),
            rate,
        )
    return table
