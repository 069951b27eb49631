"""The `susx` command line: a thin shell over the stage functions (no torch import at start-up)."""

from __future__ import annotations

import inspect as inspect_mod
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from susx_cli._version import __version__
from susx_cli.commands import (
    _common,
    calibrate,
    curate,
    demo,
    embed,
    export,
    inspect,
    merge,
    predict,
    prompts,
)
from susx_cli.commands import datasets as datasets_cmd
from susx_cli.commands import eval as eval_cmd
from susx_cli.commands import report as report_cmd

# Click's usage error, reached through public names: typer re-exports BadParameter (from click, or from the
# copy of click that newer typer releases carry), and BadParameter is a UsageError.
UsageError: type[Any] = typer.BadParameter.__base__


class OneLineErrors(TyperGroup):
    """Command-line mistakes (a bad choice, an unknown or missing option) as one ``error: ... (hint: ...)``
    line, like every other refusal of susx, instead of the usage box; exit 2 as before."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        given = kwargs.get("args", args[0] if args else None)
        _common.INVOKED_ARGS.set(None if given is None else tuple(given))  # for a batch log's start line
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `susx` or `susx datasets` alone: the help
                return super().main(*args, standalone_mode=True, **kwargs)
            where = exc.ctx.command_path if exc.ctx is not None else "susx"
            message = exc.format_message().replace("Value error, ", "")  # typer's prefix to a choice error
            sys.stderr.write(f"error: {message} (hint: `{where} --help` lists the options and values)\n")
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.stderr.write("error: aborted\n")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    name="susx",
    help="SuS-X: name-only transfer of CLIP-like models. Stages: prompts -> curate -> embed -> calibrate -> predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"susx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """SuS-X toolkit."""


def examples_last(command: typer.Typer, name: str, function) -> None:
    """Register ``function`` with the "Examples:" part of its docstring as the help's epilog, so that
    `--help` ends with the examples, after the options."""
    text, marker, examples = inspect_mod.cleandoc(function.__doc__ or "").partition("Examples:")
    paragraphs = [
        " ".join(p.split()) for p in text.split("\n\n") if p.strip()
    ]  # rewrapped, as a docstring is
    lines = [line.strip() for line in examples.splitlines() if line.strip()]
    epilog = "\n\n".join([marker, *lines]) if marker else None
    command.command(name, help="\n\n".join(paragraphs), epilog=epilog)(function)


for _name, _function in [
    ("prompts", prompts.prompts),
    ("curate", curate.curate),
    ("embed", embed.embed),
    ("calibrate", calibrate.calibrate),
    ("predict", predict.predict),
    ("inspect", inspect.inspect),
    ("demo", demo.demo),
    ("merge", merge.merge),
    ("eval", eval_cmd.eval_),
    ("report", report_cmd.report),
    ("export", export.export),
]:
    examples_last(app, _name, _function)
app.add_typer(datasets_cmd.app, name="datasets")


def main() -> None:
    app()
