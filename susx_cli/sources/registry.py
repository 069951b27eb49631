"""The sources `susx curate` knows: name -> (options dataclass, factory that builds the source from it).

Adding a source: one module with an options dataclass (fields declared with ``base.option``, checks in
``__post_init__``) and a class implementing ``base.Source``, plus one line in ``SOURCES``. `curate`
then offers its options in a help panel of their own and refuses them with any other source.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from susx_cli.errors import SusxError
from susx_cli.options import cli_fields
from susx_cli.sources import folder, laion, pool, sd
from susx_cli.sources.base import Source

SOURCES: dict[str, tuple[type, Callable[[Any], Source]]] = {
    "folder": (folder.FolderOptions, folder.FolderSource.from_options),
    "sd": (sd.SDOptions, sd.SDSource.from_options),
    "laion": (laion.LaionOptions, laion.LaionSource.from_options),
    "pool": (pool.PoolOptions, pool.PoolSource.from_options),
}

SHARED_PANEL = "Shared by several sources"


def panel(source: str) -> str:
    return f"Source: {source}"


@dataclass(frozen=True)
class CliParam:
    """One `curate` option, merged over the sources that declare it (same flags and type)."""

    name: str  # the command's parameter name
    flags: tuple[str, ...]
    type: Any  # what the command line parses into (Optional when a source has no value for it)
    default: Any  # the sources' common default, else None (each source then applies its own)
    help: str
    sources: tuple[str, ...]
    choices: tuple[str, ...] | None = None  # the values the parser accepts (the sources' declared ones)
    path_role: str | None = None  # a path option's role (options.option's ``path``)

    @property
    def flag(self) -> str:
        return self.flags[0].split("/")[0]

    @property
    def panel(self) -> str:
        return panel(self.sources[0]) if len(self.sources) == 1 else SHARED_PANEL


def _base_types(hint: Any) -> tuple[set[Any], bool]:
    """The non-None members of a type hint, and whether None is one."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = set(typing.get_args(hint))
        return members - {type(None)}, type(None) in members
    return {hint}, False


def _merge(name: str, decls: list[tuple[str, Any, Any, Any]]) -> CliParam:
    """One parameter from its declarations (source, CliOption, type hint, default) in several sources."""
    flags = {cli.flags for _, cli, _, _ in decls}
    declared = [cli.choices for _, cli, _, _ in decls]
    if len({c is None for c in declared}) > 1:
        raise TypeError(f"some sources declare choices for option {name} and some do not: make them agree")
    # Sources may accept different values (e.g. --precision): the parser accepts any of them, each
    # source's own check refuses the rest.
    choices = None if declared[0] is None else tuple(dict.fromkeys(v for c in declared for v in c))
    bases = [_base_types(hint) for _, _, hint, _ in decls]
    kinds = {frozenset(b) for b, _ in bases}
    if len(flags) > 1 or len(kinds) > 1 or len(next(iter(kinds))) != 1:
        raise TypeError(
            f"sources declare option {name} differently (flags {flags}, types {kinds}): make them agree"
        )
    (base,) = next(iter(kinds))
    defaults = {repr(default) for _, _, _, default in decls}
    default = decls[0][3] if len(defaults) == 1 else None
    optional = any(opt for _, opt in bases) or default is None
    helps: dict[str, list[str]] = {}
    for source, cli, _, _ in decls:
        helps.setdefault(cli.help, []).append(source)
    if len(decls) == 1:
        text = decls[0][1].help
    else:
        text = "; ".join(f"{', '.join(srcs)}: {h.rstrip('.')}" for h, srcs in helps.items()) + "."
    return CliParam(
        name,
        decls[0][1].flags,
        base | None if optional else base,
        default,
        text,
        tuple(s for s, *_ in decls),
        choices,
        decls[0][1].path,
    )


@cache
def cli_params() -> tuple[CliParam, ...]:
    """Every source option of `curate`, in registry order then declaration order."""
    decls: dict[str, list[tuple[str, Any, Any, Any]]] = {}
    for source, (options_class, _) in SOURCES.items():
        hints = typing.get_type_hints(options_class)
        for f, cli in cli_fields(options_class):
            decls.setdefault(cli.param, []).append((source, cli, hints[f.name], f.default))
    return tuple(_merge(name, d) for name, d in decls.items())


def lookup(source: str) -> tuple[type, Callable[[Any], Source]]:
    if source not in SOURCES:
        raise SusxError(f"unknown source {source!r}", hint=f"use one of {', '.join(SOURCES)}")
    return SOURCES[source]


def build_options(source: str, given: dict[str, Any]) -> Any:
    """The source's options dataclass from the command-line values the user gave (by parameter name);
    the dataclass supplies the defaults and the checks. Options of other sources are refused."""
    options_class, _ = lookup(source)
    fields = {cli.param: f.name for f, cli in cli_fields(options_class)}
    foreign = [p for p in given if p not in fields]
    if foreign:
        raise _foreign_options(source, foreign)
    return options_class(**{fields[p]: value for p, value in given.items()})


def _foreign_options(source: str, params: list[str]) -> SusxError:
    by_name = {p.name: p for p in cli_params()}
    flags = [by_name[p].flag if p in by_name else p for p in params]
    owners = sorted({s for p in params if p in by_name for s in by_name[p].sources}, key=list(SOURCES).index)
    them = "it is an option" if len(flags) == 1 else "they are options"
    return SusxError(
        f"{', '.join(flags)} {'does' if len(flags) == 1 else 'do'} not apply to --source {source}",
        hint=f"{them} of --source {' | '.join(owners) or '(none)'}; `susx curate --help` lists each source's options",
    )


def make_source(source: str, options: Any) -> Source:
    """The source, built by its registered factory from its (already validated) options."""
    _, factory = lookup(source)
    return factory(options)
