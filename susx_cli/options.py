"""Options dataclasses: fields that declare their default, command-line flags and help.

A stage's options (``stages/options.py``) and a curate source's options (``sources/``) are dataclasses
whose fields are declared with ``option(...)`` (or ``argument(...)`` for a positional input); their
``__post_init__`` fills and checks them. The command builds its flags from the fields
(``commands/_common.options_signature``) and the Python API passes its keywords to the same class, so
both take the same names, the same defaults and the same checks. Importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.errors import SusxError

REQUIRED: Any = dataclasses.MISSING
# Said in the help of each report and picture option: what artifacts/outputs.py lets a rerun replace.
REPLACES_OWN = " A file of this kind that this command wrote is replaced; any other file there is refused."


@dataclass(frozen=True)
class CliOption:
    """How an options field appears on the command line: its flags (the first one long; none for a
    positional argument), its help and, for an option with a fixed set of values, those values (the parser
    then refuses any other)."""

    flags: tuple[str, ...]
    help: str
    choices: tuple[str, ...] | None = None
    panel: str | None = None  # the help panel it is listed in (None: the command's "Options")
    envvar: str | None = None  # an environment variable the command line reads when the flag is absent
    path: str | None = None  # a path field's role: input, output or input-output (commands/_common tags it)

    @property
    def flag(self) -> str:
        """The long flag as a user types it (``--knn-dedup`` for ``--knn-dedup/--no-knn-dedup``)."""
        return self.flags[0].split("/")[0] if self.flags else ""

    @property
    def param(self) -> str:
        """The command's parameter name: the long flag in snake case."""
        return self.flag.lstrip("-").replace("-", "_")


def option(
    default: Any,
    *flags: str,
    help: str,
    choices: tuple[str, ...] | None = None,
    panel: str | None = None,
    envvar: str | None = None,
    path: str | None = None,
) -> Any:
    """An options-dataclass field with its default (``REQUIRED``: none) and how it appears on the command
    line; a path field says whether the command reads it, writes it or both (``path``: input, output,
    input-output)."""
    cli = CliOption(flags, help, tuple(choices) if choices else None, panel, envvar, path)
    return field(default=default, metadata={"cli": cli})


def argument(help: str, path: str | None = None) -> Any:
    """A required options-dataclass field that the command takes as a positional argument (``path``: its
    role, as for ``option``)."""
    return field(metadata={"cli": CliOption((), help, path=path)})


def parse_seeds(text: str | None, flag: str = "--order-seeds") -> tuple[int, ...]:
    """``FLAG 0,1,2`` as integers (empty parts ignored); one error line otherwise. The stage checks ranges."""
    if text is None:
        return ()
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SusxError(f"{flag} {text!r} is not a list of integers", hint=f"e.g. {flag} 0,1,2") from None


def cli_fields(options_class: type) -> list[tuple[dataclasses.Field, CliOption]]:
    """The fields of an options dataclass that are command-line options, in declaration order."""
    return [(f, f.metadata["cli"]) for f in dataclasses.fields(options_class) if "cli" in f.metadata]


def _is_path(hint: Any) -> bool:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return Path in typing.get_args(hint)
    return hint is Path


@dataclass(frozen=True)
class StageOptions:
    """Base of a stage's frozen options: paths given as strings become ``Path`` (as the command line
    parses them) and a value outside an option's declared choices is refused; subclasses check the rest
    in ``__post_init__`` (calling this one first) and store what they derive with ``_set``."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and _is_path(hints[f.name]):
                self._set(f.name, Path(value))
            cli = f.metadata.get("cli")
            if cli is not None and cli.choices and value is not None and value not in cli.choices:
                raise SusxError(
                    f"{cli.flag or f.name} must be one of {', '.join(cli.choices)}, got {value!r}",
                    hint=f"use one of {', '.join(cli.choices)}",
                )

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    @classmethod
    def build(cls, values: dict[str, Any], stage: str) -> Any:
        """The options from keyword values; an unknown keyword is refused with the ones the stage takes."""
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise SusxError(
                f"{stage}() got unknown option(s) {', '.join(unknown)}", hint=f"it takes {', '.join(names)}"
            )
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.init and f.name not in values and f.default is REQUIRED and f.default_factory is REQUIRED
        ]
        if missing:
            raise SusxError(f"{stage}() needs {', '.join(missing)}", hint=f"pass {missing[0]}=...")
        return cls(**values)
