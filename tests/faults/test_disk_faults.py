"""Full disks and read-only folders (small tmpfs mounts, so these need root; skipped with the reason
otherwise), and crashes injected between the dependent writes of the feature writer."""

from __future__ import annotations

import contextlib
import os
import subprocess

import h5py
import numpy as np
import pytest

from susx_cli.artifacts import hdf5
from tests.helpers import TINY, invoke, make_class_folders


def _can_mount() -> bool:
    return (
        hasattr(os, "geteuid")
        and os.geteuid() == 0
        and subprocess.run(["which", "mount"], capture_output=True).returncode == 0
    )


needs_root = pytest.mark.skipif(not _can_mount(), reason="mounting a small tmpfs needs root")


@contextlib.contextmanager
def tmpfs(path, size: str, read_only: bool = False):
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture()
def images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_class_folders(tmp_path / "imgs", ["a", "b"], 150)
    return tmp_path


def _same_features(a, b):
    fa, fb = hdf5.read_features(a), hdf5.read_features(b)
    assert fa.keys == fb.keys
    assert np.array_equal(fa.features, fb.features) and np.array_equal(fa.labels, fb.labels)


@pytest.mark.slow
@needs_root
def test_embed_on_a_full_disk_is_one_line_then_resumes_to_the_same_file(images):
    invoke("embed", "imgs", "--unlabelled", "-o", "ref.h5", "-b", "16", *TINY)
    with tmpfs(images / "small", "160k") as small:
        r = invoke("embed", "imgs", "--unlabelled", "-o", small / "f.h5", "-b", "16", *TINY, expect=2)
        lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "free disk space" in lines[0], r.stderr
        assert not (small / "f.h5").exists()
        partial = small / ("f.h5" + hdf5.PARTIAL_SUFFIX)
        assert partial.exists()
        with h5py.File(partial, "r") as f:
            assert 0 < int(f.attrs["items_done"]) < 300 and not f.attrs["complete"]
        subprocess.run(["mount", "-o", "remount,size=8m", str(small)], check=True)
        r = invoke("embed", "imgs", "--unlabelled", "-o", small / "f.h5", "-b", "16", *TINY)
        assert "resuming" in r.stderr
        _same_features(images / "ref.h5", small / "f.h5")


@needs_root
def test_calibrate_into_a_read_only_folder_is_one_line(images):
    (images / "classes.txt").write_text("a\nb\n")
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    invoke("curate", "p.json", "-o", "sup", "--images", "imgs")
    invoke("embed", "sup", "-o", "sup.h5", *TINY)
    invoke("embed", "p.json", "-o", "text.h5", *TINY)
    with tmpfs(images / "ro", "1m", read_only=True) as ro:
        r = invoke(
            "calibrate",
            "text.h5",
            "sup.h5",
            "-o",
            ro / "cal.json",
            "--mode",
            "fixed",
            "--alpha",
            "1",
            "--beta",
            "1",
            "--gamma",
            "1",
            expect=2,
        )
        lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "could not write" in lines[0] and "Read-only" in lines[0], r.stderr


@pytest.mark.parametrize("crash_at", ["after-rows", "after-flush", "after-counters"])
def test_a_crash_between_dependent_writes_resumes_to_the_same_file(images, monkeypatch, crash_at):
    """Each write of a chunk depends on the one before (rows, then flush, then counters, then flush):
    a crash between any two leaves a partial file that resumes to exactly the uninterrupted result."""
    invoke("embed", "imgs", "--unlabelled", "-o", "ref.h5", "-b", "16", *TINY)
    calls = {"n": 0}
    real_flush = h5py.File.flush

    class Crash(BaseException):
        pass

    def flaky_flush(self):
        calls["n"] += 1
        # Chunk 4: the first flush follows the row writes, the second the counters.
        point = {"after-rows": 7, "after-flush": 8, "after-counters": 9}[crash_at]
        if calls["n"] == point and crash_at == "after-rows":
            raise Crash()
        real_flush(self)
        if calls["n"] == point:
            raise Crash()

    monkeypatch.setattr(h5py.File, "flush", flaky_flush)
    with pytest.raises(Crash):
        from susx_cli.stages.embed import embed_images

        embed_images(
            images / "imgs",
            images / "f.h5",
            model="susx-tiny-vit",
            pretrained="none",
            unlabelled=True,
            batch_size=16,
            workers=0,
        )
    monkeypatch.setattr(h5py.File, "flush", real_flush)
    assert not (images / "f.h5").exists()
    invoke("embed", "imgs", "--unlabelled", "-o", "f.h5", "-b", "16", *TINY)
    _same_features(images / "ref.h5", images / "f.h5")


@pytest.mark.parametrize("crash_after", ["rows_done", "skipped_done"])
def test_a_crash_between_the_counter_writes_resumes_to_the_same_file(images, monkeypatch, crash_after):
    """A chunk's counters are three attribute writes (rows, skipped, items): a crash after the first or
    the second leaves counters that do not add up, and the resumed file equals the uninterrupted one."""
    (images / "imgs" / "b" / "img_000.png").write_bytes(b"\x89PNG truncated")  # a skipped image in chunk 1
    invoke("embed", "imgs", "--unlabelled", "-o", "ref.h5", "-b", "16", *TINY)
    real_set = h5py.AttributeManager.__setitem__
    writes = {"n": 0}

    class Crash(BaseException):
        pass

    def flaky_set(self, name, value):
        real_set(self, name, value)
        if name == crash_after:
            writes["n"] += 1
            if writes["n"] == 12:  # the 12th chunk of 16 items, the one after the skipped image
                raise Crash()

    monkeypatch.setattr(h5py.AttributeManager, "__setitem__", flaky_set)
    with pytest.raises(Crash):
        from susx_cli.stages.embed import embed_images

        embed_images(
            images / "imgs",
            images / "f.h5",
            model="susx-tiny-vit",
            pretrained="none",
            unlabelled=True,
            batch_size=16,
            workers=0,
        )
    monkeypatch.setattr(h5py.AttributeManager, "__setitem__", real_set)
    with h5py.File(images / ("f.h5" + hdf5.PARTIAL_SUFFIX), "r") as f:  # the torn counters are on disk
        assert int(f.attrs["items_done"]) != int(f.attrs["rows_done"]) + int(f.attrs["skipped_done"])
    invoke("embed", "imgs", "--unlabelled", "-o", "f.h5", "-b", "16", *TINY)
    _same_features(images / "ref.h5", images / "f.h5")
    assert len(hdf5.read_features(images / "f.h5").skipped) == 1
