"""A crash between the dependent writes of a support set's last step (the shard's done file, the joined
manifest, the completion marker) resumes to the set an uninterrupted run makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from susx_cli.artifacts import common, support
from tests.faults.harness import snapshot
from tests.helpers import invoke, make_class_folders

CLASSES = ["zebra", "apple", "mango"]


class Crash(BaseException):
    """Stands for the process dying: nothing in susx catches it."""


@pytest.fixture()
def w(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES))
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    make_class_folders(tmp_path / "shots", CLASSES, 2)
    return tmp_path


def _curate(out: str, *shard: str) -> None:
    invoke("curate", "p.json", "-o", out, "--images", "shots", *shard)


def _state(root, reports: bool = True) -> tuple[dict, dict, dict]:
    """Every file but classes.json (which records its creation time), that file without the time, and
    the marker. ``reports=False`` leaves out the shards' run reports (done files, the marker's
    summaries): a run that dies before its done file takes its report along, and the rerun that finds
    nothing left to do reports just that."""
    files = {k: v for k, v in snapshot(root).items() if k != support.CLASSES_FILE}
    classes = common.read_json(root / support.CLASSES_FILE)
    classes.pop("created")
    marker = json.loads((root / support.MARKER).read_text())
    if not reports:
        files = {k: v for k, v in files.items() if not k.endswith(".done") and k != support.MARKER}
        marker = {k: marker[k] for k in ("complete", "images", "per_class", "num_shards", "manifest_sha256")}
    return files, classes, marker


def _crash_before(monkeypatch, name: str) -> None:
    """Make the next write of the file called ``name`` in a support folder die before it happens."""
    real_json, real_jsonl = common.atomic_write_json, support.write_jsonl

    def guard(real):
        def write(path, *args, **kwargs):
            if path.name == name:
                raise Crash()
            return real(path, *args, **kwargs)

        return write

    monkeypatch.setattr(common, "atomic_write_json", guard(real_json))
    monkeypatch.setattr(support, "write_jsonl", guard(real_jsonl))


# The last step writes, in order: the shard's done file, manifest.jsonl, _SUCCESS.json.
BOUNDARIES = {
    "before-done": support.part_name(0, 1) + ".done",
    "before-manifest": support.MANIFEST,
    "before-marker": support.MARKER,
}


@pytest.mark.parametrize("boundary", list(BOUNDARIES))
def test_a_crash_in_the_last_step_resumes_to_the_same_set(w, monkeypatch, boundary):
    _curate("ref")
    with monkeypatch.context() as patched:
        _crash_before(patched, BOUNDARIES[boundary])
        with pytest.raises(Crash):
            from susx_cli.sources.folder import FolderSource
            from susx_cli.stages.curate import curate_source as curate

            curate(Path("p.json"), Path("out"), FolderSource(images=Path("shots")))
    assert not (w / "out" / support.MARKER).exists()
    _curate("out")
    reports = boundary != "before-done"
    assert _state(w / "out", reports) == _state(w / "ref", reports)


@pytest.mark.parametrize("boundary", ["before-done", "before-manifest", "before-marker"])
def test_a_crash_in_the_last_shards_merge_resumes_to_the_same_set(w, monkeypatch, boundary):
    """Shard 1 of 2 finishes last and dies while joining; rerunning it completes the set."""
    for i in ("0", "1"):
        _curate("ref", "--num-shards", "2", "--shard-index", i)
    _curate("out", "--num-shards", "2", "--shard-index", "0")
    name = {"before-done": support.part_name(1, 2) + ".done"}.get(boundary, BOUNDARIES[boundary])
    with monkeypatch.context() as patched:
        _crash_before(patched, name)
        with pytest.raises(Crash):
            from susx_cli.sharding import Shard
            from susx_cli.sources.folder import FolderSource
            from susx_cli.stages.curate import curate_source as curate

            curate(
                Path("p.json"), Path("out"), FolderSource(images=Path("shots")), shard=Shard(1, 2, "flags")
            )
    assert not (w / "out" / support.MARKER).exists()
    _curate("out", "--num-shards", "2", "--shard-index", "1")
    reports = boundary != "before-done"
    assert _state(w / "out", reports) == _state(w / "ref", reports)
