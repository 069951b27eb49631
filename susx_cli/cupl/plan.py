"""Request planning (pure): one chat-completions request per (class, question, sample), its cache key
and its seed (derived from the question and the sample index, so local servers reproduce answers)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from susx_cli.cupl.questions import format_question


@dataclass(frozen=True)
class Request:
    class_index: int
    question_index: int
    sample: int
    prompt: str  # the question with the class filled in
    key: str
    seed: int


def request_options(temperature: float, max_tokens: int, system: str | None) -> dict[str, Any]:
    """The options that change an answer, part of every cache key."""
    return {"temperature": temperature, "max_tokens": max_tokens, "system": system or None, "seeded": True}


def request_key(model: str, base_url: str, prompt: str, sample: int, options: dict[str, Any]) -> str:
    """The cache key of one answer: everything that changes it (the seed follows from prompt and sample)."""
    endpoint = base_url.rstrip("/")
    blob = json.dumps(
        {"model": model, "endpoint": endpoint, "prompt": prompt, "sample": sample, "options": options},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def request_seed(prompt: str, sample: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{prompt}\x00{sample}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def plan_requests(
    classes: list[str],
    questions: list[str],
    samples: int,
    model: str,
    base_url: str,
    options: dict[str, Any],
) -> list[Request]:
    """Every (class, question, sample) request, in class, question, sample order."""
    out = []
    for ci, name in enumerate(classes):
        for qi, question in enumerate(questions):
            prompt = format_question(question, name)
            for s in range(samples):
                key = request_key(model, base_url, prompt, s, options)
                out.append(Request(ci, qi, s, prompt, key, request_seed(prompt, s)))
    return out
