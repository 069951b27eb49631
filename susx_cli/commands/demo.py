"""susx demo: run every stage end to end in a fresh folder (offline by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from susx_cli.commands._common import JsonOpt, OverwriteOpt, QuietOpt, run


def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="A fresh folder for every artifact.")] = Path("demo-run"),
    model: Annotated[str | None, typer.Option("--model", "-m", help="Real open_clip model (default: tiny random).")] = None,
    pretrained: Annotated[str | None, typer.Option("--pretrained", "-p", help="Weights for --model, e.g. openai.")] = None,
    sd_model: Annotated[str | None, typer.Option("--sd-model", help="diffusers model id or folder (default: tiny random).")] = None,
    per_class: Annotated[int, typer.Option("--per-class", help="Generated support images per class.")] = 4,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run prompts -> curate -> embed -> calibrate -> predict and print the final table."""

    def stage():
        from susx_cli.stages.demo import run_demo

        return run_demo(output, model=model, pretrained=pretrained, sd_model=sd_model, per_class=per_class, overwrite=overwrite)

    run(stage, quiet=quiet, as_json=as_json)
