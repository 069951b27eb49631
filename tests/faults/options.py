"""Walk the options of every `susx` command from the Typer app itself, for generated fault cases.

``walk()`` lists one ``Param`` per parameter of every (sub)command of ``susx_cli.cli.app``: the command
path, the parameter name, its flags, the annotated type, the choices of a Literal, and the path role that
``commands/_common`` tags on a Path parameter (``output_option``, ``input_option``, ``input_argument``,
``path_option``; curate's source options through ``sources.base.option(path=...)``), and what number
it takes (``Param.number_kind``).

Use it to generate cases that follow the CLI as it grows::

    from tests.faults.options import walk, output_paths

    for p in output_paths():          # every option naming a file or folder the command writes
        print(p.command, p.flag)      # ('report',) --csv
    for p in number_options():        # every option taking a number, or a grid of numbers
        print(p.command, p.flag, p.number_kind)

Nothing here runs a command; the app is built once and cached.
"""

from __future__ import annotations

import functools
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from susx_cli.commands._common import path_role

# Text options that hold one number (parsed by the stage, not by the option parser).
NUMBER_TEXTS = {("calibrate", "--logit-scale"), ("eval", "--logit-scale"), ("curate", "--size")}


@dataclass(frozen=True)
class Param:
    command: tuple[str, ...]  # ("report",) or ("datasets", "check")
    name: str  # the Python parameter name
    flags: tuple[str, ...]  # ("--output", "-o"); an argument's are its name
    is_argument: bool
    annotation: Any  # the annotated type, e.g. Path | None, list[Path], Literal[...]
    role: str | None  # "input", "output", "input-output" for Path parameters; None when untagged
    hidden: bool

    @property
    def flag(self) -> str:
        """The spelling to pass on a command line: the first long flag (an argument has none)."""
        return next((f for f in self.flags if f.startswith("--")), self.flags[0])

    @property
    def base_type(self) -> Any:
        """The annotation without None and list: Path for ``Path | None`` and ``list[Path]``."""
        return _base(self.annotation)

    @property
    def choices(self) -> tuple[Any, ...] | None:
        base = self.base_type
        return typing.get_args(base) if typing.get_origin(base) is typing.Literal else None

    @property
    def is_path(self) -> bool:
        return self.base_type is Path

    @property
    def number_kind(self) -> str | None:
        """What number the parameter takes: "int" or "float" (a number option, or a list of them), "grid"
        (text of numbers: a hyperparameter grid, which ``with_method_options`` names ``*_grid``),
        "number-text" (text holding one number, ``NUMBER_TEXTS``); None for anything else."""
        base = self.base_type
        if base in (int, float):
            return base.__name__
        if base is str and self.name.endswith("_grid"):
            return "grid"
        if base is str and (self.command[0], self.flag) in NUMBER_TEXTS:
            return "number-text"
        return None


def _base(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (list, tuple) and args:
        return _base(args[0])
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return _base(args[0]) if len(args) == 1 else hint
    return hint


def _commands(group: Any, prefix: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for name, command in sorted(getattr(group, "commands", {}).items()):
        if getattr(command, "commands", None):
            found += _commands(command, (*prefix, name))
        else:
            found.append(((*prefix, name), command))
    return found


@functools.cache
def walk() -> tuple[Param, ...]:
    """Every parameter of every command of the susx app (help and version options left out)."""
    import typer

    from susx_cli.cli import app

    params = []
    for path, command in _commands(typer.main.get_command(app), ()):
        for p in command.params:
            descriptor = p.type_descriptor
            params.append(
                Param(
                    command=path,
                    name=p.name,
                    flags=tuple(p.opts),
                    is_argument=p.param_type_name == "argument",
                    annotation=descriptor.annotation,
                    role=path_role(p),
                    hidden=bool(getattr(p, "hidden", False)),
                )
            )
    return tuple(params)


def output_paths() -> list[Param]:
    """Every visible option or argument naming a path the command writes (role "output")."""
    return [p for p in walk() if p.role == "output" and not p.hidden]


def number_options() -> list[Param]:
    """Every option that takes a number, or text made of numbers (see ``Param.number_kind``)."""
    return [p for p in walk() if p.number_kind is not None and not p.is_argument]


def commands() -> list[tuple[str, ...]]:
    """Every command path of the app, e.g. ("embed",), ("datasets", "check")."""
    return sorted({p.command for p in walk()})
