"""Readers that check what they can: support manifests against their marker and parts against their
done-records, retrieval rows, index ranges, file names that are not UTF-8, and the overlap of an output
with a table input (the table and the images it names, not its whole folder)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from susx_cli.artifacts import common, support
from susx_cli.errors import SusxError
from susx_cli.sources import ranked
from tests.helpers import TINY, invoke, make_class_folders

CLASSES = ["zebra", "apple"]


@pytest.fixture()
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    make_class_folders(tmp_path / "shots", CLASSES, 2)
    return tmp_path


def _error_line(result) -> str:
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# ------------------------------------------------------------------ manifests and parts


def _one_part_folder(root: Path, rows: int, recorded: int) -> None:
    """A support folder with one finished part of ``rows`` rows whose done-record counts ``recorded``."""
    (root / support.PARTS).mkdir(parents=True)
    common.atomic_write_json(root / support.CLASSES_FILE, {"kind": common.SUPPORT_SET, "classes": CLASSES})
    part = root / support.PARTS / support.part_name(0, 1)
    row = {"path": "0000_zebra/a.png", "class_index": 0, "class_name": "zebra", "key": "a"}
    part.write_text("".join(json.dumps({**row, "key": f"k{i}"}) + "\n" for i in range(rows)))
    common.atomic_write_json(part.with_name(part.name + ".done"), {"rows": recorded})


def test_merge_refuses_a_part_that_differs_from_its_done_record(tmp_path):
    _one_part_folder(tmp_path / "a", rows=3, recorded=2)
    with pytest.raises(SusxError, match="done-record counts 2"):
        support.merge_parts(tmp_path / "a", 1)
    assert not (tmp_path / "a" / support.MARKER).exists()
    _one_part_folder(tmp_path / "b", rows=2, recorded=2)
    assert support.merge_parts(tmp_path / "b", 1)
    marker = json.loads((tmp_path / "b" / support.MARKER).read_text())
    assert marker["images"] == 2 and marker["manifest_sha256"] == common.sha256_file(
        tmp_path / "b" / "manifest.jsonl"
    )


def test_merge_refuses_a_part_with_a_torn_line(tmp_path):
    _one_part_folder(tmp_path, rows=2, recorded=2)
    part = tmp_path / support.PARTS / support.part_name(0, 1)
    part.write_bytes(part.read_bytes() + b'{"path": "0000_zeb')
    with pytest.raises(SusxError, match="1 unreadable"):
        support.merge_parts(tmp_path, 1)


def test_a_changed_manifest_is_refused_and_the_untouched_one_read(work):
    invoke("curate", "p.json", "-o", "sup", "--images", "shots")
    assert len(support.read_support(work / "sup").rows) == 4
    manifest = work / "sup" / "manifest.jsonl"
    original = manifest.read_bytes()
    lines = original.decode().splitlines(keepends=True)
    for changed in (original[:-10], "".join([*lines, lines[-1]]).encode(), "".join(lines[:-1]).encode()):
        manifest.write_bytes(changed)
        result = invoke(
            "embed", "sup", "-o", "s.h5", "--model", "susx-tiny-vit", "--pretrained", "none", expect=2
        )
        assert "does not match its completion marker" in _error_line(result)
        assert not (work / "s.h5").exists()
    # The same rows reordered: the count agrees, the hash does not.
    manifest.write_bytes("".join(reversed(lines)).encode())
    with pytest.raises(SusxError, match="sha256"):
        support.read_support(work / "sup")


# ------------------------------------------------------------------ retrieval rows and NaN options


def test_knn_rows_without_a_number_or_a_url_are_counted_and_nan_refused():
    rows = [
        {"url": "http://a/1.jpg", "score": 0.3},
        {"url": "http://a/2.jpg", "score": "high"},
        {"url": 17, "score": 0.2},
        {"url": "http://a/3.jpg", "score": None},
        {"url": "http://a/4.jpg", "score": True},
    ]
    kept, skipped = ranked.usable_candidates(rows, "the backend")
    assert [r["url"] for r in kept] == ["http://a/1.jpg", "http://a/3.jpg"] and skipped == 3
    for bad in (math.nan, math.inf):
        with pytest.raises(SusxError, match="similarity of"):
            ranked.usable_candidates([*rows, {"url": "http://a/5.jpg", "score": bad}], "the backend")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_guidance_nan_is_refused_before_any_model(work, value):
    result = invoke("curate", "p.json", "-o", "o", "--source", "sd", "-k", "1", "--guidance", value, expect=2)
    assert "--guidance must be a finite number" in _error_line(result)
    assert not (work / "o").exists()


# ------------------------------------------------------------------ ranges and names


def test_per_class_far_too_large_is_refused_with_the_bound(work):
    result = invoke("curate", "p.json", "-o", "o", "--source", "sd", "-k", "2000000000", expect=2)
    assert "--per-class must be at most 10,000" in _error_line(result)


def test_a_file_name_that_is_not_utf8_is_named(work):
    bad = os.fsdecode(b"bad\xff.png")
    (work / "shots" / "zebra" / "img_000.png").rename(work / "shots" / "zebra" / bad)
    result = invoke("curate", "p.json", "-o", "o", "--images", "shots", expect=2)
    assert "shots/zebra/bad\\xff.png is not valid UTF-8" in _error_line(result)
    assert not (work / "o").exists()


# ------------------------------------------------------------------ a table is not its folder


def test_an_output_beside_a_table_is_not_an_overlap(work):
    rows = [f"shots/{c}/img_{i:03d}.png,{c}" for c in CLASSES for i in range(2)]
    (work / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    invoke("curate", "--images", "train.csv", "p.json", "-o", "support-csv")
    assert len(support.read_support(work / "support-csv").rows) == 4
    # Deeper below the table's folder, as eval's work folder puts its folder-shots sets.
    invoke("curate", "--images", "train.csv", "p.json", "-o", "susx-work/my-birds/support")
    # An output that is, or holds, the folder the table's images are in still overlaps them.
    result = invoke("curate", "--images", "train.csv", "p.json", "-o", ".", expect=2)
    assert "overlaps the input" in _error_line(result)
    # (A folder below it that holds named images is refused as a folder susx did not make.)
    result = invoke("curate", "--images", "train.csv", "p.json", "-o", "shots", "--overwrite", expect=2)
    assert "not a support set made by susx" in _error_line(result)
    # A folder input still covers everything below it.
    result = invoke("curate", "--images", "shots", "p.json", "-o", "shots/inside", expect=2)
    assert "overlaps the input" in _error_line(result)


def test_loader_options_have_bounds_and_integers_fit_in_64_bits(work):
    result = invoke(
        "embed", "shots", "-c", "p.json", "-o", "x.h5", "--augment-passes", "2000000000", expect=2
    )
    assert "--augment-passes must be at most 1,000" in _error_line(result)
    result = invoke("embed", "shots", "-c", "p.json", "-o", "x.h5", "--workers", "100000", expect=2)
    assert "--workers must be at most 256" in _error_line(result)
    result = invoke(
        "embed", "shots", "-c", "p.json", "-o", "x.h5", "--seed", "99999999999999999999", expect=2
    )
    assert "--seed must fit in 64 bits" in _error_line(result)
    assert not (work / "x.h5").exists()


@pytest.mark.slow
def test_eval_on_a_dataset_of_tables_with_folder_shots(work):
    # The README's own-data example: tables in the working folder, the support sets in ./susx-work.
    for split in ("train", "val"):
        rows = [f"shots/{c}/img_{i:03d}.png,{c}" for c in CLASSES for i in range(2)]
        (work / f"{split}.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    make_class_folders(work / "test", CLASSES, 2, seed=1)
    splits = {"train": "train.csv", "val": "val.csv", "test": "test/"}
    (work / "my-birds.json").write_text(json.dumps({"id": "my-birds", "classes": CLASSES, "splits": splits}))
    invoke(
        "eval",
        "--dataset",
        "my-birds.json",
        *TINY,
        "--support",
        "folder-shots:1",
        "--method",
        "tip-adapter",
        "--calibration",
        "val",
    )
    assert list((work / "susx-results").glob("my-birds__*tip-adapter__1shot-seed0__val-*.json"))
