"""Lists that susx ships as package data (``susx_cli/data/*.json``) so that `susx prompts` needs no torch.

The ImageNet class names and the 80 OpenAI templates are open_clip's, copied by
``tools/make_shipped_data.py`` (which records the open_clip version); a test compares them with the
installed open_clip so drift is caught.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
IMAGENET_CLASSNAMES = "imagenet_classnames.json"
OPENAI_TEMPLATES = "openai_templates.json"


@cache
def read(name: str) -> dict[str, Any]:
    """One shipped data file as a JSON object (read once per process)."""
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


def imagenet_classnames() -> list[str]:
    """open_clip's 1000 ImageNet class names, in label order, as open_clip spells them (two repeat)."""
    return list(read(IMAGENET_CLASSNAMES)["names"])


def openai_templates() -> list[str]:
    """open_clip's 80 OpenAI ImageNet templates as format strings with one '{}'."""
    return list(read(OPENAI_TEMPLATES)["templates"])
