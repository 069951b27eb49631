"""One writer per output: an exclusive lock file beside the output, naming its holder.

The lock is an ``fcntl.flock`` on ``.<name>.lock`` next to the output. The kernel drops it when the
holding process dies (kill -9, crash, node reboot of a local disk), so a stale lock needs no clean-up:
the next run simply takes it. The file records the holder's PID and host so the refusal can say who
holds it. Where ``flock`` is not available (some network file systems refuse it), the lock degrades to
an ``O_EXCL`` create with a PID check, so a crashed holder on this host is still recognised as stale.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from susx_cli.artifacts.outputs import writing
from susx_cli.errors import SusxError


def lock_path(output: str | os.PathLike) -> Path:
    """Where the lock of ``output`` lives: a hidden file beside it (``.support.lock`` for ``support/``)."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _refuse(output: Path, holder: dict) -> SusxError:
    who = f"PID {holder.get('pid', '?')}" + (f" on {holder['host']}" if holder.get("host") else "")
    return SusxError(
        f"{output} is being written by another susx run ({who})",
        hint="wait for it to finish, or write to another -o/--output",
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(output: str | os.PathLike, *, wait: bool = False) -> Iterator[Path]:
    """Hold the exclusive write lock of ``output`` for the block; refuse at once if another run holds it
    (``wait``: wait for it instead, for short steps that runs of one command take in turn)."""
    output = Path(output)
    path = lock_path(output)
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    with writing(output):  # a read-only folder, a full disk or a parent that is a file: one line
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _acquire(output, path, _fcntl(), wait)
    try:
        with writing(output):
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(me).encode())
            os.fsync(fd)
        try:
            yield path
        finally:
            # Unlink while still holding the lock; a run that opened the old file meanwhile sees that
            # the name no longer points at the inode it locked, and starts over (see _acquire).
            with contextlib.suppress(OSError):
                path.unlink()
    finally:
        os.close(fd)


def _fcntl() -> ModuleType | None:
    """The ``fcntl`` module, or None where the platform has none (the lock falls back to ``O_EXCL``)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    return fcntl


def _acquire(output: Path, path: Path, fcntl: ModuleType | None, wait: bool = False) -> int:
    """An open descriptor of the lock file, exclusively locked, that the lock path still names."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if fcntl is None:
                _exclusive_fallback(output, path)
                return fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise _refuse(output, _holder(path)) from None
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                _exclusive_fallback(output, path)
                return fd
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the previous holder removed the file between our open and our lock: try again


def _exclusive_fallback(output: Path, path: Path) -> None:
    """No flock on this file system: the lock is held while the recorded PID on this host is alive."""
    holder = _holder(path)
    pid = holder.get("pid")
    if (
        isinstance(pid, int)
        and pid != os.getpid()
        and holder.get("host") == socket.gethostname()
        and _pid_alive(pid)
    ):
        raise _refuse(output, holder)
