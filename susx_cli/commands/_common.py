"""Options every command shares and the one place that turns stage results and errors into output."""

from __future__ import annotations

import contextvars
import json
import shlex
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from susx_cli.method import METHOD_MODES
from susx_cli.runtime import DEVICE_HELP, PRECISION_HELP, PRECISIONS

if TYPE_CHECKING:
    from susx_cli.progress import RichReporter

# Options with a fixed set of values parse as a Literal (or, repeatable, a StrEnum): `--help` lists the
# values and the parser refuses a typo with that list (exit 2). The values stay the stages' strings.
CALIBRATION_MODES: tuple[str, ...] = tuple(dict.fromkeys(m for modes in METHOD_MODES.values() for m in modes))
METRICS: tuple[str, ...] = ("top1", "top5", "mean_per_class_recall")


def choice(values: tuple[str, ...]) -> Any:
    """The type of a single option that takes one of ``values``."""
    return Literal[values]


def repeatable_choice(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    """The item type of a repeatable option that takes ``values`` (typer takes no list of Literal)."""
    return StrEnum(name, {v: v for v in values})


def plain(values: list[StrEnum] | None) -> list[str] | None:
    """A repeatable choice's values back as plain strings (what stages record and compare)."""
    return None if values is None else [str(v.value) for v in values]


OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Where to write the artifact.")]
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
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass.")]
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


def deprecated_alias(old_value: Any, value: Any, *, old: str, new: str) -> Any:
    """The value given under a deprecated spelling ``old`` (with a warning; call it inside a stage) when
    there is one, else ``value``: renamed options keep working for a release."""
    if old_value is None or old_value == []:
        return value
    from susx_cli.progress import warn

    warn(f"{old} is deprecated here and will be removed: write {new}")
    return old_value


# The arguments the command line was invoked with (set by cli.OneLineErrors; sys.argv when unset).
INVOKED_ARGS: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "susx_invoked_args", default=None
)
# Path options that name what a command writes; every other path option or argument is an input.
OUTPUT_OPTIONS = frozenset({"--output", "--csv", "--heatmap", "--results-dir", "--work-dir"})


def start_line() -> str:
    """What a batch log starts with: the command line, the susx version and the inputs, resolved."""
    from typer._click.globals import get_current_context

    from susx_cli import __version__
    from susx_cli.artifacts.common import resolved_path

    args = INVOKED_ARGS.get()
    line = f"start: {shlex.join(['susx', *(sys.argv[1:] if args is None else args)])} (susx {__version__})"
    ctx = get_current_context(silent=True)
    if ctx is None:
        return line
    inputs = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if OUTPUT_OPTIONS.isdisjoint(param.opts) and value is not None:
            values = value if isinstance(value, list | tuple) else [value]
            inputs += [resolved_path(v) for v in values if isinstance(v, Path)]
    return f"{line}; inputs: {', '.join(inputs)}" if inputs else line


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
            result = stage()
        except SusxError as exc:
            reporter.error(exc.one_line())
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            reporter.console.print("[red]interrupted[/red]: re-run the same command to resume")
            raise typer.Exit(130) from None
        render(result, as_json=as_json, reporter=reporter, table=table)


def render(
    result: Any, *, as_json: bool, reporter: RichReporter, table: Callable[[Any], Any] | None = None
) -> None:
    """Paths (or one JSON object) on stdout; the result's table, if any, on stderr unless quiet."""
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False, default=str) + "\n")
        return
    if getattr(result, "text", None):
        sys.stdout.write(result.text + "\n")
    reporter.show(table(result) if table is not None else getattr(result, "table", None))
    for path in result.outputs:
        sys.stdout.write(f"{path}\n")
