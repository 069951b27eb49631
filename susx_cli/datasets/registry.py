"""Registry of datasets susx knows by name."""

from __future__ import annotations

from susx_cli.errors import SusxError

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# open_clip's ImageNet names repeat two: 657/744 (synsets "missile" / "projectile, missile") and
# 836/837 ("sunglass" / "sunglasses, dark glasses, shades"). Class names must be unique, so the second
# of each pair takes another name from its own synset.
IMAGENET_RENAMES = {744: "projectile", 837: "dark glasses"}


def _imagenet() -> list[str]:
    import open_clip  # lazy: the 1000 names ship with open_clip

    names = list(open_clip.IMAGENET_CLASSNAMES)
    for index, name in IMAGENET_RENAMES.items():
        names[index] = name
    return names


CLASS_NAMES = {"imagenet": _imagenet, "cifar10": lambda: list(CIFAR10)}


def class_names(dataset: str) -> list[str]:
    key = dataset.lower()
    if key not in CLASS_NAMES:
        raise SusxError(
            f"no built-in class list for dataset {dataset!r}",
            hint=f"built-in: {', '.join(sorted(CLASS_NAMES))}; otherwise pass --classes FILE",
        )
    return CLASS_NAMES[key]()
