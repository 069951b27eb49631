"""--overwrite replaces only what susx wrote, only once the replacement is complete; one writer at a time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from susx_cli.artifacts import support
from susx_cli.artifacts.lock import lock_path
from tests.faults.harness import snapshot
from tests.helpers import invoke, make_class_folders

CLASSES = ["zebra", "apple", "mango"]


@pytest.fixture()
def w(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES))
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    make_class_folders(tmp_path / "shots", CLASSES, 3)
    make_class_folders(tmp_path / "more", CLASSES, 2, seed=7)
    invoke("curate", "p.json", "-o", "sup", "--images", "shots")
    return tmp_path


def test_overwrite_swaps_in_the_new_set_and_leaves_nothing_behind(w):
    invoke("curate", "p.json", "-o", "sup", "--images", "more", "--overwrite")
    assert support.read_support(w / "sup").counts() == [2, 2, 2]
    assert sorted(p.name for p in w.iterdir() if p.name.startswith(".")) == []


def test_a_failing_replacement_leaves_the_old_set_untouched(w):
    before = snapshot(w / "sup")
    r = invoke(
        "curate", "p.json", "-o", "sup", "--images", "empty-dir-that-is-missing", "--overwrite", expect=2
    )
    assert "does not exist" in r.stderr
    assert snapshot(w / "sup") == before
    # a replacement that fails half way (one class has no readable image) keeps the old set too
    (w / "more" / "mango").rename(w / "mango-away")
    (w / "more" / "mango").mkdir()
    (w / "more" / "mango" / "x.png").write_bytes(b"not a png")
    r = invoke("curate", "p.json", "-o", "sup", "--images", "more", "--overwrite", expect=2)
    assert "no image" in r.stderr and "'mango'" in r.stderr
    assert snapshot(w / "sup") == before
    assert support.read_support(w / "sup").counts() == [3, 3, 3]


def test_overwrite_refuses_a_set_holding_the_users_files(w):
    (w / "sup" / "my-notes.txt").write_text("mine")
    r = invoke("curate", "p.json", "-o", "sup", "--images", "more", "--overwrite", expect=2)
    assert "my-notes.txt" in r.stderr and "did not write" in r.stderr
    assert (w / "sup" / "my-notes.txt").read_text() == "mine"
    assert support.read_support(w / "sup").counts() == [3, 3, 3]


def test_output_inside_its_input_is_refused(w):
    r = invoke("curate", "p.json", "-o", "shots/sub", "--images", "shots", expect=2)
    assert "overlaps the input" in r.stderr
    assert not (w / "shots" / "sub").exists()


@pytest.mark.parametrize("crash_after", ["old-aside", "new-in"])
def test_an_interrupted_swap_is_recovered(w, crash_after):
    new = support.staging_dir(w / "sup")
    invoke("curate", "p.json", "-o", "other", "--images", "more")
    (w / "other").rename(new)
    retired = w / ".sup.susx-old"
    (w / "sup").rename(retired)
    if crash_after == "new-in":
        new.rename(w / "sup")
    support.recover_interrupted_swap(w / "sup")
    assert not retired.exists()
    expected = [3, 3, 3] if crash_after == "old-aside" else [2, 2, 2]
    assert support.read_support(w / "sup").counts() == expected


@pytest.mark.slow
def test_a_second_writer_of_the_same_set_is_refused_with_the_holders_pid(w):
    lock_of_shard = w / "sup2.shard-00000-of-00001"
    hold = (
        "import sys, time\nfrom susx_cli.artifacts.lock import output_lock\n"
        "with output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", hold, str(lock_of_shard)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        assert lock_path(lock_of_shard).exists()
        r = invoke("curate", "p.json", "-o", "sup2", "--images", "shots", expect=2)
        assert f"PID {proc.pid}" in r.stderr
        assert not (w / "sup2").exists()
    finally:
        proc.kill()
        proc.wait()
    invoke("curate", "p.json", "-o", "sup2", "--images", "shots")  # the crashed holder's lock is stale
    assert json.loads((w / "sup2" / "_SUCCESS.json").read_text())["images"] == 9


def test_min_per_class_threshold(w):
    r = invoke("curate", "p.json", "-o", "sup3", "--images", "more", "--min-per-class", "3", expect=2)
    assert "fewer than 3 images" in r.stderr and not (w / "sup3" / "_SUCCESS.json").exists()
    invoke("curate", "p.json", "-o", "sup3", "--images", "more", "--min-per-class", "2")
    assert support.read_support(w / "sup3").counts() == [2, 2, 2]


def test_a_resubmitted_array_task_that_sees_one_shard_is_refused(w, monkeypatch):
    invoke(
        "curate", "p.json", "-o", "sharded", "--images", "shots", "--num-shards", "3", "--shard-index", "0"
    )
    # `sbatch --array=1` alone: SLURM reports one task, so the shard would be 0 of 1.
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    r = invoke("curate", "p.json", "-o", "sharded", "--images", "shots", expect=2)
    assert "parts of a run of 3 shards" in r.stderr and "--num-shards 3" in r.stderr
    assert not (w / "sharded" / "_SUCCESS.json").exists()
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    for i in (1, 2):
        invoke(
            "curate",
            "p.json",
            "-o",
            "sharded",
            "--images",
            "shots",
            "--num-shards",
            "3",
            "--shard-index",
            str(i),
        )
    assert support.read_support(w / "sharded").counts() == [3, 3, 3]
