"""A dataset's photo template and CuPL question set live on its registry entry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from susx_cli.artifacts.prompts import read_prompts
from susx_cli.cupl.questions import format_question, resolve_questions
from susx_cli.datasets import registry
from susx_cli.stages.prompts import build_prompts

# sha256 of {id: [photo template, questions]} for the 19 datasets, taken from the three tables this
# registry replaced (templates.PHOTO_BY_DATASET, cupl_questions.CUPL_QUESTIONS) before the change.
BEFORE_DIGEST = "febe29804524053e8ebac6a31cec624e64b74188d0d3327c9ad61a1716c1d088"

CLASSES = ["Black_footed Albatross", "upland sandpiper", "hour glass"]

# What the prompts stage wrote before the change (photo prompts) and the first two questions per class.
BEFORE = {
    "cub": (
        [
            "A photo of a Black footed Albatross, a type of bird.",
            "A photo of a upland sandpiper, a type of bird.",
            "A photo of a hour glass, a type of bird.",
        ],
        "dataset:cub",
        6,
        [
            "Describe what an upland sandpiper, a species of bird, looks like",
            "Describe what an hour glass, a species of bird, looks like",
        ],
    ),
    "dtd": (
        ["Black footed Albatross texture.", "upland sandpiper texture.", "hour glass texture."],
        "dataset:dtd",
        6,
        ["What does an upland sandpiper material look like?", "What does an hour glass material look like?"],
    ),
    "country211": (
        [
            "A photo I took in Black footed Albatross",
            "A photo I took in upland sandpiper",
            "A photo I took in hour glass",
        ],
        "dataset:country211",
        4,
        [
            "Visually describe what upland sandpiper looks like",
            "Visually describe what hour glass looks like",
        ],
    ),
    "imagenet-r": (
        [
            "An art rendition of a Black footed Albatross.",
            "An art rendition of a upland sandpiper.",
            "An art rendition of a hour glass.",
        ],
        "dataset:imagenet-r",
        12,
        ["An art drawing of an upland sandpiper", "An art drawing of an hour glass"],
    ),
    "fgvc_aircraft": (
        [
            "A photo of a Black footed Albatross, a type of aircraft",
            "A photo of a upland sandpiper, a type of aircraft",
            "A photo of a hour glass, a type of aircraft",
        ],
        "dataset:fgvc_aircraft",
        1,
        ["Describe an upland sandpiper aircraft", "Describe an hour glass aircraft"],
    ),
    None: (
        [
            "A photo of a Black footed Albatross.",
            "A photo of a upland sandpiper.",
            "A photo of a hour glass.",
        ],
        "generic",
        5,
        ["Describe what an upland sandpiper looks like", "Describe what an hour glass looks like"],
    ),
}


def test_every_dataset_has_a_template_and_a_question_set():
    assert len(registry.DATASETS) == 19
    for spec in registry.DATASETS.values():
        assert spec.photo_template.count("{}") == 1, spec.id
        assert spec.cupl_questions and all("{class}" in q for q in spec.cupl_questions), spec.id
        assert spec.to_json()["photo_template"] == spec.photo_template
        assert spec.to_json()["cupl_questions"] == list(spec.cupl_questions)
    table = {k: [s.photo_template, list(s.cupl_questions)] for k, s in sorted(registry.DATASETS.items())}
    assert hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest() == BEFORE_DIGEST


def test_an_entry_without_template_or_questions_is_refused():
    with pytest.raises(ValueError, match="photo template"):
        registry.DatasetSpec("x", "X", 2, "split-file", "x", cupl_questions=("What is {class}?",))
    with pytest.raises(ValueError, match="question set"):
        registry.DatasetSpec("x", "X", 2, "split-file", "x", photo_template="a {}.")


@pytest.mark.parametrize("dataset", list(BEFORE))
def test_prompts_stage_writes_the_same_texts_as_before(tmp_path: Path, dataset):
    photos, label, count, first_questions = BEFORE[dataset]
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(CLASSES) + "\n")
    out = tmp_path / "prompts.json"
    build_prompts(out, classes_path=classes, dataset=dataset, template_set="photo")
    assert [e.photo for e in read_prompts(out).entries] == photos
    questions, where = resolve_questions(None, dataset)
    assert (where, len(questions)) == (label, count)
    assert [format_question(questions[0], n) for n in CLASSES[1:]] == first_questions
