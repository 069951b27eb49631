"""Sharded `embed`: parts joined into one feature file equal to a single-process run, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from susx_cli.artifacts import hdf5
from tests.helpers import TINY, invoke, make_class_folders

REPO = Path(__file__).resolve().parents[2]
BATCH = ["--batch-size", "4", "--workers", "0", "-q"]


def shard_test_images(tmp_path: Path, monkeypatch) -> Path:
    """15 readable images in 3 class folders, plus one unreadable file so the skipped lists matter."""
    monkeypatch.chdir(tmp_path)
    for var in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "RANK", "WORLD_SIZE", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    root = make_class_folders(tmp_path / "imgs", ["cat", "dog", "fox"], per_class=5)
    (tmp_path / "classes.txt").write_text("cat\ndog\nfox\n")
    (root / "dog" / "img_002b.png").write_bytes(b"not an image")
    return root


@pytest.fixture()
def images(tmp_path, monkeypatch) -> Path:
    return shard_test_images(tmp_path, monkeypatch)


def embed_args(images: Path, out: str) -> list[str]:
    return ["embed", str(images), "-o", out, "-c", "classes.txt", *TINY, *BATCH]


def assert_same_features(a_path: Path, b_path: Path) -> None:
    a, b = hdf5.read_features(a_path), hdf5.read_features(b_path)
    assert a.features.tobytes() == b.features.tobytes()
    assert a.keys == b.keys and a.labels.tolist() == b.labels.tolist() and a.classes == b.classes
    assert a.skipped == b.skipped and len(a.skipped) == 1
    assert a.model == b.model
    assert a.provenance["options"] == b.provenance["options"]
    assert a.provenance["inputs"] == b.provenance["inputs"]
    with h5py.File(a_path, "r") as fa, h5py.File(b_path, "r") as fb:
        for attr in ("items_total", "items_done", "rows_done", "skipped_done", "dtype", "normalized"):
            assert fa.attrs[attr] == fb.attrs[attr], attr


def test_two_shards_in_process_equal_one_process(images, tmp_path):
    invoke(*embed_args(images, "whole.h5"))
    first = json.loads(
        invoke(*embed_args(images, "out.h5"), "--num-shards", "2", "--shard-index", "0", "--json").stdout
    )
    assert not first["skipped"] and not (tmp_path / "out.h5").exists()
    assert (tmp_path / "out.h5.parts" / "part-00000-of-00002.h5").exists()
    again = json.loads(
        invoke(*embed_args(images, "out.h5"), "--num-shards", "2", "--shard-index", "0", "--json").stdout
    )
    assert again["skipped"]  # a finished shard is not embedded again
    invoke(*embed_args(images, "out.h5"), "--num-shards", "2", "--shard-index", "1")
    assert not (tmp_path / "out.h5.parts").exists()  # joined, then the parts removed
    assert_same_features(tmp_path / "out.h5", tmp_path / "whole.h5")
    late = json.loads(
        invoke(*embed_args(images, "out.h5"), "--num-shards", "2", "--shard-index", "0", "--json").stdout
    )
    assert late["skipped"]


def test_more_shards_than_batches_still_join(images, tmp_path):
    invoke(*embed_args(images, "whole.h5"))
    for i in range(5):  # 16 items in batches of 4: one shard gets no item at all
        invoke(*embed_args(images, "out.h5"), "--num-shards", "5", "--shard-index", str(i))
    assert_same_features(tmp_path / "out.h5", tmp_path / "whole.h5")


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "RANK", "WORLD_SIZE")
    }
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def _susx(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "susx_cli", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "variables",
    [
        lambda i: {"SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_COUNT": "2"},
        lambda i: {"RANK": str(i), "WORLD_SIZE": "2", "LOCAL_RANK": str(i)},
    ],
    ids=["slurm-array", "torchrun"],
)
def test_two_shard_subprocesses_from_environment_equal_one_process(images, tmp_path, variables):
    invoke(*embed_args(images, "whole.h5"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "susx_cli", *embed_args(images, "out.h5"), "--device", "cpu"],
            cwd=tmp_path,
            env=_env(**variables(i)),
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert_same_features(tmp_path / "out.h5", tmp_path / "whole.h5")
    assert not (tmp_path / "out.h5.parts").exists()


@pytest.mark.slow
def test_killed_shard_resumes_to_the_same_result(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = make_class_folders(tmp_path / "many", ["cat", "dog"], per_class=120)
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    (images / "dog" / "broken.png").write_bytes(b"\x89PNG truncated")
    invoke(*embed_args(images, "whole.h5"))
    shard0 = [*embed_args(images, "out.h5"), "--num-shards", "2", "--shard-index", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "susx_cli", *shard0], cwd=tmp_path, env=_env())
    partial = tmp_path / "out.h5.parts" / "part-00000-of-00002.h5.partial"
    deadline, done = time.time() + 120, 0
    while time.time() < deadline and proc.poll() is None and done < 24:
        try:
            with h5py.File(partial, "r", locking=False) as f:
                done = int(f.attrs["items_done"])
        except (OSError, KeyError):
            done = 0
        time.sleep(0.01)
    assert proc.poll() is None, "the shard finished before it could be killed; make the input larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial.exists() and not partial.with_suffix("").exists()
    shard1 = _susx(
        [*embed_args(images, "out.h5"), "--num-shards", "2", "--shard-index", "1"], _env(), tmp_path
    )
    assert shard1.returncode == 0, shard1.stderr
    assert not (tmp_path / "out.h5").exists()  # shard 0 is not finished: nothing joined
    resumed = _susx([a for a in shard0 if a != "-q"], _env(), tmp_path)  # -q would hide "resuming"
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert_same_features(tmp_path / "out.h5", tmp_path / "whole.h5")


def _one_line_error(result, *needles: str) -> None:
    err = result.stderr.strip()
    assert err.startswith("error:") and all(n in err for n in needles), err


def test_merge_joins_by_hand_and_refuses_bad_parts(images, tmp_path):
    invoke(*embed_args(images, "whole.h5"))
    parts = tmp_path / "out.h5.parts"
    invoke(*embed_args(images, "out.h5"), "--num-shards", "2", "--shard-index", "0")

    missing = invoke("merge", "out.h5", "--num-shards", "2", expect=2)
    _one_line_error(missing, "[1]", "not finished")
    other_count = invoke("merge", "out.h5", "--num-shards", "3", expect=2)
    _one_line_error(other_count, "2 shards", "not 3")
    mixed = invoke(*embed_args(images, "out.h5"), "--num-shards", "3", "--shard-index", "1", expect=2)
    _one_line_error(mixed, "2 shards")

    # Shard 1 from another model: its run refuses to join, and nothing is merged or lost.
    invoke(*embed_args(images, "other.h5"), "--num-shards", "2", "--shard-index", "1")
    other_part = tmp_path / "other.h5.parts" / "part-00001-of-00002.h5"
    with h5py.File(other_part, "a") as f:
        model = json.loads(f.attrs["model"])
        f.attrs["model"] = json.dumps({**model, "name": "another-model"})
    (parts / "part-00001-of-00002.h5").write_bytes(other_part.read_bytes())
    other_model = invoke("merge", "out.h5", "--num-shards", "2", expect=2)
    _one_line_error(other_model, "part-00001-of-00002.h5", "model")
    assert not (tmp_path / "out.h5").exists() and len(list(parts.glob("*.h5"))) == 2

    # The right part, then a merge by hand: equal to one process, parts removed.
    (parts / "part-00001-of-00002.h5").unlink()
    invoke(
        *embed_args(images, "out2.h5"), "--num-shards", "2", "--shard-index", "1"
    )  # a normal part, elsewhere
    (parts / "part-00001-of-00002.h5").write_bytes(
        (tmp_path / "out2.h5.parts" / "part-00001-of-00002.h5").read_bytes()
    )
    joined = json.loads(invoke("merge", "out.h5", "--num-shards", "2", "--json").stdout)
    assert joined["summary"]["parts"] == 2 and not parts.exists()
    assert_same_features(tmp_path / "out.h5", tmp_path / "whole.h5")
    again = json.loads(invoke("merge", "out.h5", "--num-shards", "2", "--json").stdout)
    assert again["skipped"]


def test_text_embedding_refuses_shard_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    result = invoke(
        "embed", "p.json", "-o", "t.h5", *TINY, "--num-shards", "2", "--shard-index", "0", expect=2
    )
    _one_line_error(result, "not sharded")
    assert not (tmp_path / "t.h5").exists()
