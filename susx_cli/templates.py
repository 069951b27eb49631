"""Prompt templates: the paper's one photo template per dataset, the 7-template ensemble, open_clip's 80."""

from __future__ import annotations

from pathlib import Path

from susx_cli.errors import SusxError

# The 7 templates of the reference's `ensemble` pool (METHOD.md).
ENSEMBLE = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]

DEFAULT_PHOTO = "A photo of a {}."

# The paper's `photo` prompt per dataset (METHOD.md). ImageNet-R has none in the reference code
# (it crashes); ours is marked as our own choice.
PHOTO_BY_DATASET = {
    "imagenet": "A photo of a {}.",
    "cifar10": "A photo of a {}.",
    "cifar100": "A photo of a {}.",
    "caltech101": "A photo of a {}.",
    "caltech256": "A photo of a {}.",
    "sun397": "A photo of a {}.",
    "imagenet-sketch": "A black and white pencil sketch of a {}.",
    "imagenet-r": "An art rendition of a {}.",
    "birdsnap": "A photo of a {}, a type of bird.",
    "cub": "A photo of a {}, a type of bird.",
    "country211": "A photo I took in {}",
    "oxford_pets": "A photo of a pet {}.",
    "stanford_cars": "A photo of a {} car.",
    "flowers102": "A photo of a {}, a type of flower.",
    "food101": "A photo of a {}, a type of food.",
    "fgvc_aircraft": "A photo of a {}, a type of aircraft",
    "dtd": "{} texture.",
    "eurosat": "A centered satellite photo of {}.",
    "ucf101": "A photo of a person doing {}.",
}
OUR_CHOICE = {"imagenet-r"}

TEMPLATE_SETS = ("photo", "ensemble", "openai")


def openai_templates() -> list[str]:
    """The 80 ImageNet templates that open_clip ships, as format strings."""
    import open_clip  # lazy: pulls torch

    marker = "\x00CLASS\x00"
    return [t(marker).replace(marker, "{}") for t in open_clip.OPENAI_IMAGENET_TEMPLATES]


def read_template_file(path: Path) -> list[str]:
    """One template per line, each with exactly one '{}' where the class name goes."""
    if not path.exists():
        raise SusxError(f"template file {path} does not exist", hint="check the path, or use photo|ensemble|openai")
    templates = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    templates = [t for t in templates if t and not t.startswith("#")]
    if not templates:
        raise SusxError(f"template file {path} holds no templates", hint="one template per line, each with '{}'")
    for t in templates:
        if t.count("{}") != 1:
            raise SusxError(f"template {t!r} in {path} must contain '{{}}' exactly once", hint="e.g. 'a photo of a {}.'")
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
    if dataset is None:
        return DEFAULT_PHOTO
    return PHOTO_BY_DATASET.get(dataset, DEFAULT_PHOTO)
