"""Working files in the artifact layer: the torn-line-tolerant JSONL reader/appender, a retrieval shard's
state, eval's work folder layout."""

from __future__ import annotations

import json

from susx_cli.artifacts.jsonl import JsonlAppender, read_jsonl, repair_tail, scan_jsonl, write_jsonl
from susx_cli.artifacts.shard_state import ShardState, read_candidates, write_candidates
from susx_cli.artifacts.workdir import Workdir, write_split


def test_reader_skips_a_torn_last_line_and_counts_it(tmp_path):
    path = tmp_path / "log.jsonl"
    assert read_jsonl(path) == [] and scan_jsonl(path) == ([], 0)
    path.write_bytes(b'{"a": 1}\n\n{"a": 2}\n{"a": 3, "b"')
    assert scan_jsonl(path) == ([{"a": 1}, {"a": 2}], 1)


def test_appender_cuts_a_torn_tail_before_appending(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2, "b')  # killed mid-append
    with JsonlAppender(path) as log:
        log.append({"a": 3})
    # the row after the torn one is whole (appending after the torn bytes would have lost it too)
    assert path.read_bytes() == b'{"a": 1}\n{"a": 3}\n' and read_jsonl(path) == [{"a": 1}, {"a": 3}]


def test_appender_keeps_a_whole_last_row_without_newline(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}')
    repair_tail(path)
    assert path.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
    big = tmp_path / "big.jsonl"  # a torn line longer than the block repair_tail reads backwards in
    big.write_bytes(b'{"a": 1}\n{"x": "' + b"y" * 200_000)
    repair_tail(big, block=4096)
    assert big.read_bytes() == b'{"a": 1}\n'
    only = tmp_path / "only.jsonl"
    only.write_bytes(b'{"a"')
    repair_tail(only)
    assert only.read_bytes() == b""


def test_appender_creates_the_folder_and_buffers_until_sync(tmp_path):
    path = tmp_path / "deep" / "log.jsonl"
    log = JsonlAppender(path)
    log.append({"n": 1}, sync=False)
    log.sync()
    assert read_jsonl(path) == [{"n": 1}]
    log.close()
    write_jsonl(path, [{"n": 2}, {"n": 3}])
    assert read_jsonl(path) == [{"n": 2}, {"n": 3}]


def test_shard_state_layout_rounds_and_stash(tmp_path):
    state = ShardState.of_shard(tmp_path, "laion", 1, 4)
    assert state.root == tmp_path / "parts" / "laion-00001-of-00004"
    rows = [
        {"url": "http://a/1", "caption": "a", "score": 0.5, "query": "q", "matched": "zebra"},
        {"url": "http://a/2", "caption": None, "score": None, "query": "q"},
    ]
    state.write_candidates(3, rows)
    assert state.has_candidates(3) and not state.has_candidates(0)
    got = state.read_candidates(3)
    assert [r["rank"] for r in got] == [0, 1] and got[0]["matched"] == "zebra" and got[1]["matched"] is None
    assert state.pending_round() is None
    first = state.new_round()
    first.root.mkdir()
    assert state.pending_round() == first and first.root.name == "round-0001"
    assert first.next_output().name == "out-0000"
    state.finish_round(first)
    assert state.pending_round() is None and state.new_round().root.name == "round-0002"
    target = state.stash("ab" * 32, "jpg", b"data")
    assert state.stashed() == {"ab" * 32: target}
    state.clear_stash()
    assert state.stashed() == {}
    with state.attempt_log() as log:
        log.append({"class_index": 3, "rank": 0, "url": "http://a/1", "status": "kept", "reason": None})
    assert state.read_attempts()[0]["status"] == "kept"


def test_candidates_round_trip(tmp_path):
    write_candidates(tmp_path / "c.parquet", [{"url": "u", "score": 1.0}])
    assert read_candidates(tmp_path / "c.parquet") == [
        {"rank": 0, "url": "u", "caption": None, "score": 1.0, "query": None}
    ]


def test_eval_workdir_names_every_file_by_its_inputs(tmp_path):
    """Every work-dir name is a readable prefix and a hash of the inputs that decide the artifact: the same
    inputs give the same path (reused), inputs that differ in anything give another (no collision)."""
    wd = Workdir(tmp_path / "work", tmp_path / "results", "eurosat")
    seed0, seed1 = {"support": {"shots": 2, "seed": 0}}, {"support": {"shots": 2, "seed": 1}}
    text = wd.text("RN50", "openai", {"templates": "ensemble"})
    assert text.parent == tmp_path / "work" / "eurosat" / "rn50__openai" and text.name.startswith("text-")
    assert text == wd.text("RN50", "openai", {"templates": "ensemble"})
    assert text != wd.text("RN50", "openai", {"templates": "photo"})
    cal = wd.calibration("RN50", "openai", "tip-x-loo", seed0)
    assert cal.name.startswith("calibration-tip-x-loo-") and cal.suffix == ".json"
    assert cal != wd.calibration("RN50", "openai", "tip-x-loo", seed1)
    assert wd.support_features("RN50", "openai", "2shot", seed0) != wd.support_features(
        "RN50", "openai", "2shot", seed1
    )
    folder = wd.support_folder("2shot", 0, seed0)
    assert folder.parent == tmp_path / "work" / "eurosat" / "support" and folder.name.startswith(
        "2shot-seed0-"
    )
    result = wd.result("eurosat__rn50-openai__tip-x__2shot-seed0__val", seed0)
    assert result.parent == tmp_path / "results" and result.name.startswith("eurosat__rn50-openai__tip-x__")
    assert result != wd.result("eurosat__rn50-openai__tip-x__2shot-seed0__val", seed1)
    split = write_split(wd.split, {"test": [["a.png", 0, "a"]]})
    stamp = split.stat().st_mtime_ns
    write_split(wd.split, {"test": [["a.png", 0, "a"]]})  # unchanged: not rewritten
    assert split.stat().st_mtime_ns == stamp and json.loads(split.read_text()) == {
        "test": [["a.png", 0, "a"]]
    }
