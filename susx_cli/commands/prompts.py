"""susx prompts: class names + templates (+ CuPL sentences from files, URLs or an LLM) -> prompts.json."""

from __future__ import annotations

from typing import Any

from susx_cli.commands._common import build_options, options_command, run
from susx_cli.stages.options import PromptsOptions


@options_command(PromptsOptions)
def prompts(**values: Any) -> None:
    """Write prompts.json: the ordered class list and each class's texts.

    Examples:

      susx prompts -d imagenet -t openai -o prompts.json

      susx prompts -c classes.txt -o prompts.json

      susx prompts -c classes.txt --cupl cupl.json --pool combined -o prompts.json
    """

    def stage():
        from susx_cli.stages.prompts import prompts as prompts_stage

        return prompts_stage(build_options(PromptsOptions, values))

    run(stage, quiet=values["quiet"], as_json=values["as_json"])
