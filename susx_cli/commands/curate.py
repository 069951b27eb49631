"""susx curate: build a support set (image folder + manifest) from prompts.json.

The sources and their options come from ``susx_cli.sources.registry``: every option a source declares
becomes a flag here, in that source's help panel (or the shared one); the flags a user gave are handed
to the chosen source's options dataclass, which fills in the defaults and checks them.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from susx_cli.commands._common import (
    ExecutorOpt,
    JsonOpt,
    NumShardsOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    RayAddressOpt,
    ShardIndexOpt,
    run,
)
from susx_cli.sources.registry import SOURCES, CliParam, cli_params

if TYPE_CHECKING:
    from rich.table import Table

    from susx_cli.stages.results import StageResult

_KW = inspect.Parameter.KEYWORD_ONLY
_GENERAL = [
    inspect.Parameter("ctx", _KW, annotation=typer.Context),
    inspect.Parameter(
        "prompts_path",
        _KW,
        annotation=Annotated[
            Path, typer.Argument(help="prompts.json (its class list orders the support set).")
        ],
    ),
    inspect.Parameter("output", _KW, annotation=OutputOpt),
    inspect.Parameter(
        "source",
        _KW,
        default="folder",
        annotation=Annotated[
            Literal[tuple(SOURCES)],
            typer.Option(
                "--source", help="Where the images come from; each source's options are in its panel below."
            ),
        ],
    ),
]
_TAIL = [
    inspect.Parameter(
        "min_per_class",
        _KW,
        default=1,
        annotation=Annotated[
            int,
            typer.Option(
                "--min-per-class",
                help="Leave the set unfinished (exit 2) if a class has fewer images; 0 accepts empty classes.",
            ),
        ],
    ),
    inspect.Parameter("num_shards", _KW, default=None, annotation=NumShardsOpt),
    inspect.Parameter("shard_index", _KW, default=None, annotation=ShardIndexOpt),
    inspect.Parameter("executor", _KW, default="local", annotation=ExecutorOpt),
    inspect.Parameter("ray_address", _KW, default=None, annotation=RayAddressOpt),
    inspect.Parameter("overwrite", _KW, default=False, annotation=OverwriteOpt),
    inspect.Parameter("quiet", _KW, default=False, annotation=QuietOpt),
    inspect.Parameter("as_json", _KW, default=False, annotation=JsonOpt),
]


def _source_parameters() -> list[inspect.Parameter]:
    """The sources' options: the shared panel first, then one panel per source in registry order."""
    shared_first = sorted(cli_params(), key=lambda p: len(p.sources) == 1)
    return [
        inspect.Parameter(
            p.name,
            _KW,
            default=p.default,
            annotation=Annotated[
                _choice_type(p), typer.Option(*p.flags, help=p.help, rich_help_panel=p.panel)
            ],
        )
        for p in shared_first
    ]


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
    source = values["source"]
    # Only what the user typed goes to the source: its options dataclass holds the defaults.
    given = {p.name: values[p.name] for p in cli_params() if _given(ctx, p.name)}

    def stage() -> StageResult:
        from susx_cli.sharding import resolve_shard
        from susx_cli.sources.registry import build_options, make_source
        from susx_cli.stages import on_ray
        from susx_cli.stages.curate import curate as curate_stage
        from susx_cli.stages.options import check_executor

        options = build_options(source, clip_model_spec(given))
        if check_executor(values["executor"], values["ray_address"], values["shard_index"]):
            return on_ray.curate_on_ray(
                values["prompts_path"],
                values["output"],
                source,
                options,
                num_shards=values["num_shards"],
                address=values["ray_address"],
                min_per_class=values["min_per_class"],
                overwrite=values["overwrite"],
                quiet=values["quiet"],
            )
        src = make_source(source, options)
        shard = resolve_shard(values["num_shards"], values["shard_index"])
        return curate_stage(
            values["prompts_path"],
            values["output"],
            src,
            shard=shard,
            min_per_class=values["min_per_class"],
            overwrite=values["overwrite"],
        )

    run(
        stage,
        quiet=values["quiet"],
        as_json=values["as_json"],
        table=lambda result: class_stats_table(source, result),
    )


curate.__signature__ = inspect.Signature([*_GENERAL, *_source_parameters(), *_TAIL])


def clip_model_spec(given: dict[str, Any]) -> dict[str, Any]:
    """``--clip-model ARCH:TAG`` split into --clip-model ARCH and --clip-pretrained TAG (one model syntax)."""
    if given.get("clip_model") is None:
        return given
    from susx_cli.model_spec import resolve_model

    arch, weights = resolve_model(
        given["clip_model"],
        given.get("clip_pretrained"),
        default=None,
        flags=("--clip-model", "--clip-pretrained"),
    )
    return {**given, "clip_model": arch} | ({"clip_pretrained": weights} if weights is not None else {})


def class_stats_table(source: str, result: StageResult) -> Table | None:
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
