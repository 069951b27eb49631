"""susx prompts: class names + templates (+ CuPL sentences) -> prompts.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from susx_cli.commands._common import JsonOpt, OutputOpt, OverwriteOpt, QuietOpt, run


def prompts(
    output: OutputOpt = Path("prompts.json"),
    classes: Annotated[
        Path | None,
        typer.Option("--classes", "-c", help="Class names: text file (one per line), JSON list, or CoOp split JSON."),
    ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Built-in class list and photo template, e.g. imagenet.")] = None,
    templates: Annotated[
        str, typer.Option("--templates", "-t", help="photo | ensemble (7) | openai (80) | path to a file, one per line.")
    ] = "ensemble",
    photo: Annotated[str | None, typer.Option("--photo-template", help="Override the photo template, e.g. 'A photo of a {}.'")] = None,
    cupl: Annotated[list[Path] | None, typer.Option("--cupl", help="CuPL sentence file {classname: [sentences]}; repeatable.")] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="Default text pool: template | cupl | combined.")] = None,
    clean: Annotated[bool, typer.Option("--clean/--no-clean", help="Underscores to spaces, whitespace collapsed.")] = True,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write prompts.json: the ordered class list and each class's texts."""

    def stage():
        from susx_cli.stages.prompts import build_prompts

        return build_prompts(
            output,
            classes_path=classes,
            dataset=dataset,
            template_set=templates,
            photo=photo,
            cupl_paths=cupl or [],
            pool=pool,
            clean=clean,
            overwrite=overwrite,
        )

    run(stage, quiet=quiet, as_json=as_json)
