"""Cleaning LLM answers into CuPL sentences (pure): applied when sentences are read from the cache, so a
change of cleaning never costs a request."""

from __future__ import annotations

import re

MIN_CHARS = 5
CLEANING_VERSION = 1

_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*")
_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,200}>")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+\u2022>#]+|\d{1,3}[.)])\s+")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")
_SENTENCE_END = re.compile(r"\.(?=\s|$)")
_QUOTES = "\"'\u201c\u201d\u2018\u2019"


def clean_answer(text: str | None, min_chars: int = MIN_CHARS) -> tuple[str | None, str]:
    """One answer as a sentence, or None with the reason (``empty``, ``markup``, ``short``).

    Markup (code fences, HTML tags, list markers, emphasis) is removed; a first line that only
    introduces the answer ("Here is a caption:") is dropped; whitespace is collapsed; the text is cut at
    its first full stop that ends a sentence (the paper stopped generation at the first '.'); it ends
    with exactly one full stop (or its own '!' / '?'). Answers under ``min_chars`` characters are dropped.
    """
    if text is None or not text.strip():
        return None, "empty"
    text = _TAG.sub(" ", _FENCE.sub(" ", text))
    lines = [_LIST_MARKER.sub("", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]
    text = " ".join(" ".join(lines).split())
    text = _EMPHASIS.sub("", text).strip()
    text = text.strip(_QUOTES + " ")
    if not re.search(r"\w", text):
        return None, "markup"
    match = _SENTENCE_END.search(text)
    if match:
        text = text[: match.start()]
    text = " ".join(text.split()).strip(_QUOTES + " ").rstrip(" .,;:").strip(_QUOTES + " ")
    if len(text) < min_chars:
        return None, "short"
    if not text.endswith(("!", "?")):
        text += "."
    return text, "ok"


def clean_answers(answers: list[str], min_chars: int = MIN_CHARS) -> tuple[list[str], dict[str, int]]:
    """Cleaned sentences in order, exact duplicates dropped; counts of what was dropped and why."""
    kept: list[str] = []
    seen: set[str] = set()
    dropped = {"empty": 0, "markup": 0, "short": 0, "duplicate": 0}
    for answer in answers:
        sentence, why = clean_answer(answer, min_chars)
        if sentence is None:
            dropped[why] += 1
        elif sentence in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(sentence)
            kept.append(sentence)
    return kept, dropped
