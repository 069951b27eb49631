"""Options every command shares and the one place that turns stage results and errors into output."""

from __future__ import annotations

import contextvars
import inspect
import json
import shlex
import sys
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from susx_cli.method import registry
from susx_cli.runtime import DEVICE_HELP, PRECISION_HELP, PRECISIONS

if TYPE_CHECKING:
    from susx_cli.progress import RichReporter
    from susx_cli.stages.results import StageResult

# Options with a fixed set of values parse as a Literal (or, repeatable, a str Enum): `--help` lists the
# values and the parser refuses a typo with that list (exit 2). The values stay the stages' strings.
CALIBRATION_MODES: tuple[str, ...] = registry.MODES


def choice(values: tuple[str, ...]) -> Any:
    """The type of a single option that takes one of ``values``."""
    return Literal[values]


def repeatable_choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    """The item type of a repeatable option that takes ``values`` (typer takes no list of Literal)."""
    return Enum(name, {v: v for v in values}, type=str)


def with_method_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command``, whose last parameter is ``**hyperparameters``, with each registered hyperparameter's
    flag (a fixed value) and grid flag as options, in one help panel per method (or per group of methods
    sharing them). The command receives them by parameter name (``--gda-alpha-grid``: gda_alpha_grid)."""
    sig = inspect.signature(command, eval_str=True)
    params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    kw = inspect.Parameter.KEYWORD_ONLY
    for h, owners in registry.hyperparameter_flags().values():
        panel = f"Method {owners[0]}" if len(owners) == 1 else f"Methods {', '.join(owners)}"
        value_help = f"mode fixed: {h.help}, in {h.range_text()}."
        grid_help = f"search grid of {h.name}: 'reference', 'start:stop:steps' or 'v1,v2'."
        params += [
            inspect.Parameter(
                h.param,
                kw,
                default=None,
                annotation=Annotated[
                    float | None, typer.Option(h.flag, help=value_help, rich_help_panel=panel)
                ],
            ),
            inspect.Parameter(
                f"{h.param}_grid",
                kw,
                default=None,
                annotation=Annotated[
                    str | None, typer.Option(h.grid_flag, help=grid_help, rich_help_panel=panel)
                ],
            ),
        ]
    command.__signature__ = sig.replace(parameters=params)
    return command


def plain(values: list[Enum] | None) -> list[str] | None:
    """A repeatable choice's values back as plain strings (what stages record and compare)."""
    return None if values is None else [str(v.value) for v in values]


# Every Path parameter says whether the command reads it, writes it, or both; tests/faults/options.py
# reads the tag from the Typer app, so a new output option gets the generated output-path fault cases
# the day it is added (and a Path parameter without a tag fails a test).
PATH_ROLE = "susx_path_role"
INPUT, OUTPUT, INPUT_OUTPUT = "input", "output", "input-output"


def _tagged(info: Any, role: str) -> Any:
    setattr(info, PATH_ROLE, role)
    return info


def output_option(*decls: str, **kwargs: Any) -> Any:
    """A typer option naming a path the command writes (checked by ``artifacts.outputs``)."""
    return _tagged(typer.Option(*decls, **kwargs), OUTPUT)


def input_option(*decls: str, **kwargs: Any) -> Any:
    """A typer option naming a path the command only reads."""
    return _tagged(typer.Option(*decls, **kwargs), INPUT)


def path_option(role: str, *decls: str, **kwargs: Any) -> Any:
    """A typer option naming a path of ``role`` (INPUT, OUTPUT or INPUT_OUTPUT: read, then written)."""
    return _tagged(typer.Option(*decls, **kwargs), role)


def input_argument(**kwargs: Any) -> Any:
    """A typer argument naming a path the command only reads."""
    return _tagged(typer.Argument(**kwargs), INPUT)


def path_argument(role: str, **kwargs: Any) -> Any:
    """A typer argument naming a path of ``role``."""
    return _tagged(typer.Argument(**kwargs), role)


OutputOpt = Annotated[Path, output_option("--output", "-o", help="Where to write the artifact.")]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing output made with other options.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or logs on stderr.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON object on stdout instead of paths.")]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="open_clip architecture or hf-hub:org/repo id, with its weights as ARCH:TAG if you like "
        "(e.g. ViT-B-32:openai).",
    ),
]
PretrainedOpt = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        "-p",
        help="Weights: an open_clip tag, a checkpoint path, or 'none' (random); default: "
        "the -m tag, else openai.",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help=DEVICE_HELP)]
PrecisionOpt = Annotated[choice(PRECISIONS), typer.Option("--precision", help=PRECISION_HELP)]
# The upper bound catches typos: a batch of more images than this would not fit any accelerator's memory.
BatchSizeOpt = Annotated[
    int,
    typer.Option("--batch-size", "-b", min=1, max=65536, help="Images (or prompt texts) per forward pass."),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="Image loading processes (default: cores - 1).")
]
NumShardsOpt = Annotated[
    int | None, typer.Option("--num-shards", help="Split the work into this many shards.")
]
ShardIndexOpt = Annotated[int | None, typer.Option("--shard-index", help="This worker's shard (0-based).")]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        help="local (this process, or the shard given by --shard-index) or ray (every shard as a Ray task; "
        "--num-shards defaults to the cluster's GPUs, else its CPUs).",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray cluster to run on (host:port, ray://host:port, auto); default: $RAY_ADDRESS, else a local "
        "Ray started for the run.",
    ),
]


# The arguments the command line was invoked with (set by cli.OneLineErrors; sys.argv when unset).
INVOKED_ARGS: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "susx_invoked_args", default=None
)


def path_role(param: Any) -> str | None:
    """The role a click parameter of ours was tagged with where it was declared (``PATH_ROLE``: input,
    output, input-output); None for a parameter that names no path."""
    descriptor = getattr(param, "type_descriptor", None)
    return getattr(getattr(descriptor, "parameter_info", None), PATH_ROLE, None)


def start_line() -> str:
    """What a batch log starts with: the command line, the susx version and the inputs, resolved."""
    from susx_cli._version import __version__
    from susx_cli.artifacts.common import resolved_path

    args = INVOKED_ARGS.get()
    line = f"start: {shlex.join(['susx', *(sys.argv[1:] if args is None else args)])} (susx {__version__})"
    ctx = current_context()
    if ctx is None:
        return line
    inputs = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if path_role(param) in (INPUT, INPUT_OUTPUT) and value is not None:
            values = value if isinstance(value, list | tuple) else [value]
            inputs += [resolved_path(v) for v in values if isinstance(v, Path)]
    return f"{line}; inputs: {', '.join(inputs)}" if inputs else line


def current_context() -> Any:
    """The click context of the running command (None outside one). The click that typer runs on is its
    own copy in newer releases and the click package in older ones: reach it through typer's public class."""
    import importlib

    click_package = typer.Context.__mro__[1].__module__.rpartition(".")[0]
    return importlib.import_module(f"{click_package}.globals").get_current_context(silent=True)


_KW = inspect.Parameter.KEYWORD_ONLY


def options_parameters(options_class: type, *, panel: str | None = None) -> list[inspect.Parameter]:
    """The command's parameters for an options dataclass's fields (``susx_cli.options.option``): each
    field's flags, help and default; a field with choices parses as a Literal of them, one without flags is
    a positional argument. The command passes the values to ``options_class`` by the same names."""
    from susx_cli.options import REQUIRED, cli_fields

    hints = typing.get_type_hints(options_class)
    params = []
    for f, cli in cli_fields(options_class):
        hint = hints[f.name]
        if cli.choices is not None:
            optional = type(None) in typing.get_args(hint)
            hint = Literal[cli.choices] | None if optional else Literal[cli.choices]
        if typing.get_origin(hint) is tuple:  # a repeatable option (or argument): typer parses a list
            item = list[typing.get_args(hint)[0]]
            hint = item if f.default is REQUIRED else item | None
        parser = (
            typer.Option(*cli.flags, help=cli.help, rich_help_panel=cli.panel or panel, envvar=cli.envvar)
            if cli.flags
            else typer.Argument(help=cli.help, metavar=f.name.upper())
        )
        if cli.path is not None:
            _tagged(parser, cli.path)
        default = inspect.Parameter.empty if f.default is REQUIRED else f.default
        if isinstance(default, tuple):
            default = None
        params.append(inspect.Parameter(f.name, _KW, default=default, annotation=Annotated[hint, parser]))
    return params


PRESENTATION = [
    inspect.Parameter("quiet", _KW, default=False, annotation=QuietOpt),
    inspect.Parameter("as_json", _KW, default=False, annotation=JsonOpt),
]


def options_command(options_class: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A command taking ``**values`` whose options are ``options_class``'s fields plus --quiet and --json."""

    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        command.__signature__ = inspect.Signature([*options_parameters(options_class), *PRESENTATION])
        return command

    return wrap


def build_options(options_class: type, values: dict[str, Any]) -> Any:
    """``options_class`` from a command's values (its presentation options left out; a repeatable option
    the user did not give is the field's empty default)."""
    from susx_cli.options import cli_fields

    given = {}
    for f, _ in cli_fields(options_class):
        value = values[f.name]
        given[f.name] = tuple(value) if isinstance(value, list) else value
        if value is None and isinstance(f.default, tuple):
            given[f.name] = f.default
    return options_class(**given)


def run(
    stage: Callable[[], Any],
    *,
    quiet: bool,
    as_json: bool,
    table: Callable[[Any], Any] | None = None,
) -> None:
    """Call a stage under the rich reporter (stderr; --quiet keeps warnings only), render its result (paths
    or JSON on stdout, ``table(result)`` on stderr), turn SusxError into one line + exit code. A batch log
    (stderr a file or a pipe) starts with the command line and takes every write to stderr meanwhile."""
    from susx_cli.errors import SusxError
    from susx_cli.progress import RichReporter, reporting

    reporter = RichReporter(quiet=quiet)
    with reporting(reporter), reporter.owning_stderr():
        reporter.note(start_line())
        try:
            check_numbers()
            result = stage()
        except SusxError as exc:
            reporter.error(exc.one_line())
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            reporter.console.print("[red]interrupted[/red]: re-run the same command to resume")
            raise typer.Exit(130) from None
        render(result, as_json=as_json, reporter=reporter, table=table)


def check_numbers() -> None:
    """Refuse a NaN or infinite value of any number option of the running command (the parser accepts
    ``nan`` and ``inf`` for a float), and an integer beyond 64 bits, before the stage sees it: no
    comparison a stage makes is true of NaN, so a ``--guidance nan`` would otherwise pass every range
    check, and numpy and torch overflow on such an integer. Ranges of one option are its stage's check."""
    import math

    from susx_cli.errors import SusxError

    ctx = current_context()
    if ctx is None:
        return
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        for number in value if isinstance(value, (list, tuple)) else [value]:
            flag = max(getattr(param, "opts", None) or [param.name], key=len)
            if isinstance(number, float) and not math.isfinite(number):
                raise SusxError(
                    f"{flag} must be a finite number, got {number}", hint=f"`{ctx.command_path} --help`"
                )
            if isinstance(number, int) and not -(2**63) <= number < 2**63:
                raise SusxError(
                    f"{flag} must fit in 64 bits, got {number}", hint=f"`{ctx.command_path} --help`"
                )


def render(
    result: StageResult, *, as_json: bool, reporter: RichReporter, table: Callable[[Any], Any] | None = None
) -> None:
    """Paths (or one JSON object) on stdout; the result's table, if any, on stderr unless quiet."""
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False, default=str) + "\n")
        return
    if result.text:
        sys.stdout.write(result.text + "\n")
    if table is not None:
        reporter.show(table(result))
    for path in result.outputs:
        sys.stdout.write(f"{path}\n")
