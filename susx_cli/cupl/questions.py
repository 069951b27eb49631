"""The questions an LLM is asked per class to get CuPL-style descriptive sentences.

Placeholders: ``{class}`` (the class name) and ``{article}`` ("a" or "an", chosen for the class name).

Each dataset's set (the SuS-X reference's questions) lives on its entry in
``susx_cli.datasets.registry``; ``GENERIC`` (for custom class lists) is ours: CuPL's ImageNet set.
"""

from __future__ import annotations

from pathlib import Path

from susx_cli.datasets import registry
from susx_cli.errors import SusxError

GENERIC = list(registry.Q_IMAGENET)  # for custom class lists: CuPL's ImageNet set, the most general one


def dataset_questions(dataset: str) -> list[str] | None:
    """The question set on a dataset's registry entry (by id, any case), or None."""
    spec = registry.DATASETS.get(dataset.lower())
    return list(spec.cupl_questions) if spec is not None else None


# Words that start with a vowel letter but a consonant sound, or the other way round.
_A_PREFIXES = ("uni", "use", "usu", "uti", "eu", "ewe", "one", "ubiq")
_AN_PREFIXES = ("hour", "honest", "honou", "honor", "heir")


def article(name: str) -> str:
    """ "a" or "an" for ``name``: the reference's vowel rule, with the common exceptions."""
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
        raise SusxError(
            f"question file {path} holds no questions", hint="one question per line, each with {class}"
        )
    return [check_question(q, str(path)) for q in questions]


def resolve_questions(spec: str | None, dataset: str | None) -> tuple[list[str], str]:
    """The question set and a label saying where it came from.

    ``spec``: None (the dataset's set when there is one, else generic), ``dataset``, ``generic``, a
    dataset name (e.g. ``cub`` for a custom list of birds) or a path to a text file.
    """
    if spec is None:
        spec = "dataset" if dataset is not None and dataset_questions(dataset) is not None else "generic"
    if spec == "generic":
        return list(GENERIC), "generic"
    if spec == "dataset":
        if dataset is None:
            raise SusxError(
                "--llm-questions dataset needs --dataset NAME",
                hint="use --llm-questions generic, a dataset name such as cub, or a file",
            )
        questions = dataset_questions(dataset)
        if questions is None:
            raise SusxError(
                f"no CuPL questions for dataset {dataset!r}",
                hint=f"use generic, a file, or one of {', '.join(sorted(registry.DATASETS))}",
            )
        return questions, f"dataset:{dataset.lower()}"
    named = dataset_questions(spec)  # a dataset's set for another list, e.g. cub's for a list of birds
    if named is not None:
        return named, f"dataset:{spec.lower()}"
    path = Path(spec)
    if path.suffix or path.exists():
        return read_question_file(path), str(path.expanduser().resolve())  # one spelling of the file
    raise SusxError(
        f"unknown question set {spec!r}",
        hint=f"use dataset, generic, a path to a text file, or one of {', '.join(sorted(registry.DATASETS))}",
    )
