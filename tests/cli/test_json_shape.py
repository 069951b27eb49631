"""`--json` has the same shape whether a stage did the work or found its output up to date."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import TINY, invoke, make_class_folders

CLASSES = ["zebra", "apple", "mango"]


def shape(value: Any) -> Any:
    """The key structure of a JSON value: dicts by their keys, recursively; anything else is a leaf."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return None


def run_twice(*args) -> tuple[dict[str, Any], dict[str, Any]]:
    first = json.loads(invoke(*args, "--json").stdout)
    second = json.loads(invoke(*args, "--json").stdout)
    return first, second


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES))
    (tmp_path / "cupl.json").write_text(
        json.dumps({"zebra": ["A zebra has stripes."], "apple": ["An apple is round."]})
    )
    make_class_folders(tmp_path / "shots", CLASSES, 2)
    return tmp_path


COMMANDS = {
    "prompts": [("prompts", "-c", "classes.txt", "-o", "p.json")],
    "prompts with cupl": [("prompts", "-c", "classes.txt", "--cupl", "cupl.json", "-o", "p.json")],
    "embed images": [("embed", "shots", "-c", "classes.txt", "-o", "shots.h5", *TINY)],
    "embed texts": [
        ("prompts", "-c", "classes.txt", "-o", "p.json"),
        ("embed", "p.json", "-o", "text.h5", *TINY),
    ],
    "predict": [
        ("prompts", "-c", "classes.txt", "-o", "p.json"),
        ("embed", "p.json", "-o", "text.h5", *TINY),
        ("embed", "shots", "-c", "p.json", "-o", "shots.h5", *TINY),
        ("predict", "text.h5", "shots.h5", "-o", "pred.h5"),
    ],
    "curate": [
        ("prompts", "-c", "classes.txt", "-o", "p.json"),
        ("curate", "p.json", "-o", "sup", "--images", "shots"),
    ],
    "curate, last of two shards": [
        ("prompts", "-c", "classes.txt", "-o", "p.json"),
        ("curate", "p.json", "-o", "sup", "--images", "shots", "--num-shards", "2", "--shard-index", "0"),
        ("curate", "p.json", "-o", "sup", "--images", "shots", "--num-shards", "2", "--shard-index", "1"),
    ],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_skipped_rerun_has_the_same_summary_keys(workdir, name):
    *before, command = COMMANDS[name]
    for args in before:
        invoke(*args)
    first, second = run_twice(*command)
    assert first["skipped"] is False and second["skipped"] is True
    assert first["summary"], "the run that did the work reports a summary"
    assert shape(second["summary"]) == shape(first["summary"])
    # read back, not made up: the counts agree with the run that wrote the artifact
    assert second["summary"] == first["summary"]


def test_merge_of_feature_parts_reports_the_same_keys_when_already_joined(workdir):
    args = ("embed", "shots", "-c", "classes.txt", "-o", "f.h5", "--num-shards", "2", *TINY)
    first = json.loads(invoke(*args, "--shard-index", "0", "--json").stdout)
    assert first["summary"]["shard"] == 0
    invoke(*args, "--shard-index", "1")  # the last shard joins the parts
    merged = json.loads(invoke("merge", "f.h5", "--num-shards", "2", "--json").stdout)
    assert merged["skipped"] is True
    assert set(merged["summary"]) == {"rows", "skipped", "parts"} and merged["summary"]["rows"] == 6
