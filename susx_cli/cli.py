"""The `susx` command line: a thin shell over the stage functions (no torch import at start-up)."""

from __future__ import annotations

import typer

from susx_cli import __version__
from susx_cli.commands import calibrate, curate, demo, embed, export, inspect, merge, predict, prompts
from susx_cli.commands import datasets as datasets_cmd
from susx_cli.commands import eval as eval_cmd
from susx_cli.commands import report as report_cmd

app = typer.Typer(
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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """SuS-X toolkit."""


app.command("prompts")(prompts.prompts)
app.command("curate")(curate.curate)
app.command("embed")(embed.embed)
app.command("calibrate")(calibrate.calibrate)
app.command("predict")(predict.predict)
app.command("inspect")(inspect.inspect)
app.command("demo")(demo.demo)
app.command("merge")(merge.merge)
app.add_typer(datasets_cmd.app, name="datasets")
app.command("eval")(eval_cmd.eval_)
app.command("report")(report_cmd.report)
app.command("export")(export.export)


def main() -> None:
    app()
