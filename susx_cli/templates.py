"""Prompt templates: the 7-template ensemble, open_clip's 80, template files; a dataset's photo template.

Each dataset's photo template lives on its entry in ``susx_cli.datasets.registry``.
"""

from __future__ import annotations

from pathlib import Path

from susx_cli.errors import SusxError

# The 7 templates of the reference's `ensemble` pool (docs/METHOD.md).
ENSEMBLE = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]

DEFAULT_PHOTO = "A photo of a {}."  # for class lists that are no known dataset


def openai_templates() -> list[str]:
    """open_clip's 80 ImageNet templates as format strings (shipped as data: no torch import)."""
    from susx_cli import shipped

    return shipped.openai_templates()


def read_template_file(path: Path) -> list[str]:
    """One template per line, each with exactly one '{}' where the class name goes."""
    if not path.exists():
        raise SusxError(
            f"template file {path} does not exist", hint="check the path, or use photo|ensemble|openai"
        )
    templates = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    templates = [t for t in templates if t and not t.startswith("#")]
    if not templates:
        raise SusxError(
            f"template file {path} holds no templates", hint="one template per line, each with '{}'"
        )
    for t in templates:
        if t.count("{}") != 1:
            raise SusxError(
                f"template {t!r} in {path} must contain '{{}}' exactly once", hint="e.g. 'a photo of a {}.'"
            )
    return templates


def resolve_templates(spec: str, photo: str) -> list[str]:
    """A template set by name (photo | ensemble | openai) or from a file path."""
    if spec == "photo":
        return [photo]
    if spec == "ensemble":
        return list(ENSEMBLE)
    if spec == "openai":
        return openai_templates()
    path = Path(spec)
    if path.suffix or path.exists():
        return read_template_file(path)
    raise SusxError(f"unknown template set {spec!r}", hint="use photo, ensemble, openai, or a path to a file")


def photo_template(dataset: str | None) -> str:
    """The dataset's photo prompt (its registry entry, by exact id), else the default one."""
    from susx_cli.datasets.registry import DATASETS

    spec = DATASETS.get(dataset) if dataset is not None else None
    return spec.photo_template if spec is not None else DEFAULT_PHOTO
