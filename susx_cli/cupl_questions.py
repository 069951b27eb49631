"""The questions an LLM is asked per class to get CuPL-style descriptive sentences.

Placeholders: ``{class}`` (the class name) and ``{article}`` ("a" or "an", chosen for the class name).

The per-dataset sets restate the question templates of the SuS-X reference code
(vishaal27/SuS-X, ``utils/prompts_helper.py``), keyed by our dataset names (the keys of
``susx_cli.templates.PHOTO_BY_DATASET``). Differences from the reference: ``fgvc_aircraft`` lists its
one question once (the reference lists it twice, i.e. it asked for twice as many answers; raise
``--llm-samples`` for the same effect) and trailing spaces after a final colon are dropped.
``GENERIC`` (for custom class lists) is ours: the ImageNet set of CuPL, the most general one.
"""

from __future__ import annotations

from pathlib import Path

from susx_cli.errors import SusxError

_IMAGENET = [
    "Describe what {article} {class} looks like",
    "How can you identify {article} {class}?",
    "What does {article} {class} look like?",
    "Describe an image from the internet of {article} {class}",
    "A caption of an image of {article} {class}:",
]
_OBJECTS = [
    "Describe what {article} {class} looks like",
    "What does {article} {class} look like",
    "Describe a photo of {article} {class}",
]
_BIRDS = [
    "Describe what {article} {class}, a species of bird, looks like",
    "What does {article} {class} look like",
    "Visually describe {article} {class}, a type of bird",
    "A caption of an image of {article} {class}, a type of bird",
    "Describe the appearance of {article} {class}",
    "What are the prominent features to identify {article} {class} bird",
]

CUPL_QUESTIONS: dict[str, list[str]] = {
    "imagenet": _IMAGENET,
    "cifar10": _IMAGENET,
    "cifar100": _IMAGENET,
    "caltech101": _OBJECTS,
    "caltech256": _OBJECTS,
    "sun397": [
        "Describe what {article} {class} looks like",
        "How can you identify {article} {class}?",
        "Describe a photo of {article} {class}",
    ],
    "imagenet-sketch": [
        "Describe how a black and white sketch of {article} {class} looks like",
        "A black and white sketch of {article} {class}",
        "Describe a black and white sketch from the internet of {article} {class}",
    ],
    "imagenet-r": [
        "An art drawing of {article} {class}",
        "Artwork showing {article} {class}",
        "A cartoon {article} {class}",
        "An origami of {article} {class}",
        "A deviant art photo depicting {article} {class}",
        "An embroidery of {article} {class}",
        "A graffiti art showing {article} {class}",
        "A painting of {article} {class}",
        "A sculpture of {article} {class}",
        "A black and white sketch of {article} {class}",
        "A toy {article} {class}",
        "A videogame of {article} {class}",
    ],
    "birdsnap": _BIRDS,
    "cub": _BIRDS,
    "country211": [
        "Visually describe what {class} looks like",
        "What does the landscape of {class} look like",
        "Describe a photo taken in {class}",
        "How does a typical photo taken in {class} look like",
    ],
    "oxford_pets": [
        "Describe what {article} {class} pet looks like",
        "Visually describe {article} {class}, a type of pet",
    ],
    "stanford_cars": [
        "How can you identify {article} {class}",
        "Description of {article} {class}, a type of car",
        "A caption of a photo of {article} {class}:",
        "What are the primary characteristics of {article} {class}?",
        "Description of the exterior of {article} {class}",
        "What are the identifying characteristics of {article} {class}, a type of car?",
        "Describe an image from the internet of {article} {class}",
        "What does {article} {class} look like?",
        "Describe what {article} {class}, a type of car, looks like",
    ],
    "flowers102": [
        "What does {article} {class} flower look like",
        "Describe the appearance of {article} {class}",
        "A caption of an image of {article} {class}",
        "Visually describe {article} {class}, a type of flower",
    ],
    "food101": [
        "Describe what {article} {class} looks like",
        "Visually describe {article} {class}",
        "How can you tell that the food in this photo is {article} {class}?",
    ],
    "fgvc_aircraft": ["Describe {article} {class} aircraft"],
    "dtd": [
        "What does {article} {class} material look like?",
        "What does {article} {class} surface look like?",
        "What does {article} {class} texture look like?",
        "What does {article} {class} object look like?",
        "What does {article} {class} thing look like?",
        "What does {article} {class} pattern look like?",
    ],
    "eurosat": [
        "Describe an aerial satellite view of {article} {class}",
        "How does a satellite photo of {article} {class} look like",
        "Visually describe a centered satellite view of {article} {class}",
    ],
    "ucf101": [
        "What does a person doing {class} look like",
        "Describe the process of {class}",
        "How does a person {class}",
    ],
}

GENERIC = list(_IMAGENET)

# Words that start with a vowel letter but a consonant sound, or the other way round.
_A_PREFIXES = ("uni", "use", "usu", "uti", "eu", "ewe", "one", "ubiq")
_AN_PREFIXES = ("hour", "honest", "honou", "honor", "heir")


def article(name: str) -> str:
    """"a" or "an" for ``name``: the reference's vowel rule, with the common exceptions."""
    word = name.strip().lower()
    if word.startswith(_AN_PREFIXES):
        return "an"
    if word.startswith(_A_PREFIXES):
        return "a"
    return "an" if word[:1] in ("a", "e", "i", "o", "u") else "a"


def format_question(question: str, name: str) -> str:
    """A question with its placeholders filled (plain replacement: braces in class names are safe)."""
    return question.replace("{article}", article(name)).replace("{class}", name)


def check_question(question: str, source: str) -> str:
    if "{class}" not in question:
        raise SusxError(
            f"question {question!r} in {source} has no {{class}} placeholder",
            hint="write e.g. 'Describe what {article} {class} looks like'",
        )
    rest = question.replace("{class}", "").replace("{article}", "")
    if "{" in rest or "}" in rest:
        raise SusxError(
            f"question {question!r} in {source} has an unknown placeholder",
            hint="only {class} and {article} are replaced",
        )
    return question


def read_question_file(path: Path) -> list[str]:
    """One question per line; blank lines and lines starting with '#' are skipped."""
    if not path.is_file():
        raise SusxError(f"question file {path} does not exist", hint="give dataset, generic, or a text file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise SusxError(f"question file {path} is not UTF-8 text", hint="one question per line") from exc
    questions = [" ".join(ln.split()) for ln in lines]
    questions = [q for q in questions if q and not q.startswith("#")]
    if not questions:
        raise SusxError(f"question file {path} holds no questions", hint="one question per line, each with {class}")
    return [check_question(q, str(path)) for q in questions]


def resolve_questions(spec: str | None, dataset: str | None) -> tuple[list[str], str]:
    """The question set and a label saying where it came from.

    ``spec``: None (the dataset's set when there is one, else generic), ``dataset``, ``generic``, a
    dataset name (e.g. ``cub`` for a custom list of birds) or a path to a text file.
    """
    if spec is None:
        spec = "dataset" if dataset is not None and dataset.lower() in CUPL_QUESTIONS else "generic"
    if spec == "generic":
        return list(GENERIC), "generic"
    if spec == "dataset":
        if dataset is None:
            raise SusxError(
                "--llm-questions dataset needs --dataset NAME",
                hint="use --llm-questions generic, a dataset name such as cub, or a file",
            )
        key = dataset.lower()
        if key not in CUPL_QUESTIONS:
            raise SusxError(
                f"no CuPL questions for dataset {dataset!r}",
                hint=f"use generic, a file, or one of {', '.join(sorted(CUPL_QUESTIONS))}",
            )
        return list(CUPL_QUESTIONS[key]), f"dataset:{key}"
    if spec.lower() in CUPL_QUESTIONS:
        return list(CUPL_QUESTIONS[spec.lower()]), f"dataset:{spec.lower()}"
    path = Path(spec)
    if path.suffix or path.exists():
        return read_question_file(path), str(path)
    raise SusxError(
        f"unknown question set {spec!r}",
        hint=f"use dataset, generic, a path to a text file, or one of {', '.join(sorted(CUPL_QUESTIONS))}",
    )
