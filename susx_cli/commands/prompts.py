"""susx prompts: class names + templates (+ CuPL sentences from files, URLs or an LLM) -> prompts.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from susx_cli.artifacts.prompts import POOLS
from susx_cli.commands._common import (
    JsonOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    choice,
    input_option,
    output_option,
    run,
)

_LLM = "CuPL sentences from an LLM"


def prompts(
    output: OutputOpt = Path("prompts.json"),
    classes: Annotated[
        Path | None,
        input_option(
            "--classes", "-c", help="Class names: text file (one per line), JSON list, or CoOp split JSON."
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="Built-in class list and photo template, e.g. imagenet."),
    ] = None,
    templates: Annotated[
        str,
        typer.Option(
            "--templates", "-t", help="photo | ensemble (7) | openai (80) | path to a file, one per line."
        ),
    ] = "ensemble",
    photo: Annotated[
        str | None,
        typer.Option("--photo-template", help="Override the photo template, e.g. 'A photo of a {}.'"),
    ] = None,
    cupl: Annotated[
        list[str] | None,
        typer.Option(
            "--cupl",
            help="CuPL sentence file {classname: [sentences]}, a path or an http(s) URL; repeatable.",
        ),
    ] = None,
    cupl_sha256: Annotated[
        list[str] | None,
        typer.Option(
            "--cupl-sha256", help="sha256 of each --cupl URL, in the same order; cached copies are reused."
        ),
    ] = None,
    pool: Annotated[
        choice(POOLS) | None,
        typer.Option(
            "--pool", help="Default text pool (default: combined when CuPL sentences exist, else template)."
        ),
    ] = None,
    clean: Annotated[
        bool, typer.Option("--clean/--no-clean", help="Underscores to spaces, whitespace collapsed.")
    ] = True,
    llm: Annotated[
        bool,
        typer.Option(
            "--llm", help="Ask an OpenAI-compatible endpoint for CuPL sentences.", rich_help_panel=_LLM
        ),
    ] = False,
    llm_base_url: Annotated[
        str,
        typer.Option(
            "--llm-base-url",
            envvar="OPENAI_BASE_URL",
            rich_help_panel=_LLM,
            help="Chat-completions API base, e.g. http://localhost:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama).",
        ),
    ] = "https://api.openai.com/v1",
    llm_model: Annotated[
        str | None, typer.Option("--llm-model", help="Model name at the endpoint.", rich_help_panel=_LLM)
    ] = None,
    llm_key_env: Annotated[
        str,
        typer.Option("--llm-key-env", help="Environment variable holding the API key.", rich_help_panel=_LLM),
    ] = "OPENAI_API_KEY",
    llm_questions: Annotated[
        str | None,
        typer.Option(
            "--llm-questions",
            rich_help_panel=_LLM,
            help="dataset (the paper's questions for --dataset) | generic | a dataset name | a file of questions with {class} and {article}.",
        ),
    ] = None,
    llm_samples: Annotated[
        int, typer.Option("--llm-samples", help="Answers per question (paper: 10).", rich_help_panel=_LLM)
    ] = 10,
    llm_temperature: Annotated[
        float,
        typer.Option("--llm-temperature", help="Sampling temperature (paper: 0.99).", rich_help_panel=_LLM),
    ] = 0.99,
    llm_max_tokens: Annotated[
        int, typer.Option("--llm-max-tokens", help="Tokens per answer (paper: 50).", rich_help_panel=_LLM)
    ] = 50,
    llm_system: Annotated[
        str | None,
        typer.Option(
            "--llm-system",
            help="System message; '' sends none. Default: asks for one plain sentence.",
            rich_help_panel=_LLM,
        ),
    ] = None,
    llm_concurrency: Annotated[
        int, typer.Option("--llm-concurrency", help="Requests in flight at once.", rich_help_panel=_LLM)
    ] = 8,
    llm_timeout: Annotated[
        float, typer.Option("--llm-timeout", help="Seconds to wait for one answer.", rich_help_panel=_LLM)
    ] = 60.0,
    llm_retries: Annotated[
        int,
        typer.Option(
            "--llm-retries",
            help="Retries on 429, 5xx, timeouts (exponential backoff, Retry-After honoured).",
            rich_help_panel=_LLM,
        ),
    ] = 5,
    llm_cache: Annotated[
        Path | None,
        output_option(
            "--llm-cache",
            help="Answer cache (JSONL); default: <output stem>.llm-cache.jsonl beside the output.",
            rich_help_panel=_LLM,
        ),
    ] = None,
    max_requests: Annotated[
        int | None,
        typer.Option(
            "--max-requests",
            help="Send at most this many requests (retries count); the cache keeps what was done.",
            rich_help_panel=_LLM,
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write prompts.json: the ordered class list and each class's texts.

    Examples:

      susx prompts -d imagenet -t openai -o prompts.json

      susx prompts -c classes.txt -o prompts.json

      susx prompts -c classes.txt --cupl cupl.json --pool combined -o prompts.json
    """

    def stage():
        from susx_cli.stages.prompts import build_prompts, llm_settings

        settings = llm_settings(
            llm,
            model=llm_model,
            base_url=llm_base_url,
            key_env=llm_key_env,
            questions=llm_questions,
            samples=llm_samples,
            temperature=llm_temperature,
            max_tokens=llm_max_tokens,
            system=llm_system,
            concurrency=llm_concurrency,
            timeout=llm_timeout,
            retries=llm_retries,
            cache=llm_cache,
            max_requests=max_requests,
        )
        return build_prompts(
            output,
            classes_path=classes,
            dataset=dataset,
            template_set=templates,
            photo=photo,
            cupl_paths=cupl or [],
            cupl_sha256=cupl_sha256 or [],
            pool=pool,
            clean=clean,
            overwrite=overwrite,
            llm=settings,
        )

    run(stage, quiet=quiet, as_json=as_json)
