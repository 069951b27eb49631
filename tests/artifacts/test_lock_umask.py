"""One writer per output (lock naming its holder, stale after a crash) and artifacts that follow the umask."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from susx_cli.artifacts import common
from susx_cli.artifacts.lock import lock_path, output_lock
from susx_cli.errors import SusxError

HOLD = """
import sys, time
from susx_cli.artifacts.lock import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _hold_in_child(output):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(output)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "features.h5"
    proc = _hold_in_child(out)
    try:
        with pytest.raises(SusxError) as err:
            with output_lock(out):
                pass
        assert f"PID {proc.pid}" in err.value.one_line()
        assert "another -o/--output" in err.value.one_line()
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_holder_is_taken_over(tmp_path):
    out = tmp_path / "support"
    proc = _hold_in_child(out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert lock_path(out).exists()  # the dead holder left its file behind
    with output_lock(out) as path:
        assert path == lock_path(out)
        assert str(os.getpid()) in path.read_text()
    assert not lock_path(out).exists()


def test_lock_is_released_after_an_error_in_the_block(tmp_path):
    out = tmp_path / "x.json"
    with pytest.raises(RuntimeError):
        with output_lock(out):
            raise RuntimeError("boom")
    with output_lock(out):
        pass


@pytest.mark.slow
def test_one_process_after_another_many_times(tmp_path):
    # The unlink-on-release must never let two holders in: a tight loop of overlapping attempts from a
    # child while we take and release the lock repeatedly; whoever holds it writes its pid, then checks.
    out = tmp_path / "contended"
    marker = tmp_path / "owner"
    child = f"""
import os, sys, time
from susx_cli.artifacts.lock import output_lock
from susx_cli.errors import SusxError
end = time.time() + 2
clashes = 0
while time.time() < end:
    try:
        with output_lock({str(out)!r}):
            open({str(marker)!r}, "w").write(str(os.getpid()))
            time.sleep(0.001)
            if open({str(marker)!r}).read() != str(os.getpid()):
                clashes += 1
    except SusxError:
        pass
print(clashes)
"""
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    clashes = 0
    end = time.time() + 2
    while time.time() < end:
        try:
            with output_lock(out):
                marker.write_text(str(os.getpid()))
                time.sleep(0.001)
                if marker.read_text() != str(os.getpid()):
                    clashes += 1
        except SusxError:
            pass
    child_clashes = int(proc.communicate()[0].strip())
    assert clashes == 0 and child_clashes == 0


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_writes_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        assert common.current_umask() == umask
        path = tmp_path / f"a{umask:o}.json"
        common.atomic_write_json(path, {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_second_embed_of_the_same_output_is_refused(tmp_path, monkeypatch):
    from tests.helpers import TINY, invoke, make_class_folders

    monkeypatch.chdir(tmp_path)
    make_class_folders(tmp_path / "imgs", ["a", "b"], 2)
    proc = _hold_in_child(tmp_path / "f.h5")
    try:
        r = invoke("embed", "imgs", "--unlabelled", "-o", "f.h5", *TINY, expect=2)
        assert f"PID {proc.pid}" in r.stderr and not (tmp_path / "f.h5").exists()
    finally:
        proc.kill()
        proc.wait()
    invoke("embed", "imgs", "--unlabelled", "-o", "f.h5", *TINY)
    assert (tmp_path / "f.h5").exists()
