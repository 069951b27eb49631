"""What every artifact shares: kinds, schema versions, provenance, hashing, atomic writes, idempotency."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from susx_cli._version import __version__
from susx_cli.errors import SusxError

# One kind name per artifact; readers refuse files of another kind.
PROMPTS = "susx.prompts"
IMAGE_FEATURES = "susx.image_features"
TEXT_CLASSIFIER = "susx.text_classifier"
SUPPORT_SET = "susx.support_set"
CALIBRATION = "susx.calibration"
PREDICTIONS = "susx.predictions"

# Bump the major number when a reader of the old layout would misread the new one.
SCHEMA_VERSION = 1
# Kinds whose layout changed since: their own version (calibration 2: a method's hyperparameters as a dict).
KIND_SCHEMA_VERSIONS: dict[str, int] = {CALIBRATION: 2}


def schema_version(kind: Any) -> int:
    """The schema version this susx writes and reads for ``kind``."""
    return KIND_SCHEMA_VERSIONS.get(kind, SCHEMA_VERSION)


STAGE_OF_KIND = {
    PROMPTS: "susx prompts",
    IMAGE_FEATURES: "susx embed",
    TEXT_CLASSIFIER: "susx embed",
    SUPPORT_SET: "susx curate",
    CALIBRATION: "susx calibrate",
    PREDICTIONS: "susx predict",
}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def tool_info() -> dict[str, str]:
    return {"name": "susx", "version": __version__}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB pieces so large feature files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_safe_relative(path: Any) -> bool:
    """Whether a path read from an artifact stays inside the artifact's folder: a relative POSIX path
    without '..', '.', empty parts, a drive or backslashes (a hand-edited row must not reach other files)."""
    if not isinstance(path, str) or not path or "\\" in path or "\x00" in path:
        return False
    parts = path.split("/")
    return not path.startswith("/") and ":" not in parts[0] and all(p not in ("", ".", "..") for p in parts)


def resolved_path(path: str | os.PathLike) -> str:
    """How a path the user typed is recorded in options: absolute and resolved, so the same file spelled
    another way (relative, absolute, from another working directory, through '~') is the same option."""
    return str(Path(path).expanduser().resolve())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def identity(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """How an artifact names one of its inputs: path, kind and content hash.

    A directory (support set) is identified by the hash of its manifest.
    """
    path = Path(path)
    target = path / "manifest.jsonl" if path.is_dir() else path
    return {
        "path": str(path),
        "kind": kind,
        "sha256": sha256_file(target) if target.is_file() else None,
    }


def require_utf8_name(path: str | os.PathLike) -> None:
    """Refuse a file name that is not valid UTF-8 (a listing, a manifest and HDF5 keys record names as
    UTF-8 text), naming it with its undecodable bytes shown as escapes."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(text).decode("utf-8", "backslashreplace")
        raise SusxError(
            f"the file name {shown} is not valid UTF-8",
            hint="rename the file (e.g. with `convmv`) or move it away",
        ) from None


# Listings of the files a table or split names (its rows), not of everything under their folder: an
# output inside that folder does not touch them (only one that is, or holds, the whole folder does).
NAMED_LISTINGS = ("table-images", "split-images")


def listing_identity(
    root: str | os.PathLike, files: Iterable[str | os.PathLike], kind: str
) -> dict[str, Any]:
    """How an artifact names a folder of files it read: the resolved folder, and a sha256 over each file's
    path relative to it, size and modification time, so a changed, added or removed file changes the
    identity while another spelling of the same folder (relative, absolute, another cwd) does not."""
    root = Path(root)
    digest = hashlib.sha256()
    count = 0
    for path in sorted(Path(f) for f in files):
        require_utf8_name(path)
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:  # a file outside the folder (a split row may point anywhere under its root)
            rel = str(path.resolve())
        try:
            st = path.stat()
            digest.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{rel}\tmissing\n".encode())
        count += 1
    return {"path": str(root.resolve()), "kind": kind, "sha256": digest.hexdigest(), "files": count}


def provenance(options: dict[str, Any], inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The self-description every artifact carries: tool, time, options and inputs."""
    return {"tool": tool_info(), "created": now_iso(), "options": options, "inputs": inputs}


def fingerprint(prov: dict[str, Any]) -> dict[str, Any]:
    """The part of the provenance that decides whether an existing output is up to date."""
    return {
        "options": prov.get("options"),
        "inputs": sorted((i.get("kind") or "", i.get("sha256") or "") for i in prov.get("inputs", [])),
    }


def same_fingerprint(a: dict[str, Any], b: dict[str, Any]) -> bool:
    # JSON round trip so tuples and lists compare alike.
    return json.loads(json.dumps(fingerprint(a))) == json.loads(json.dumps(fingerprint(b)))


def fingerprint_changes(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> str:
    """What makes ``new`` another run than ``old`` (two provenances), for a refusal to read: the options
    and inputs that differ, old -> new, at most ``limit`` of them and hashes cut to 8 characters, e.g.
    'seed 1 -> 2, input susx.prompts 3fa2b1c9 -> 77de01aa'."""
    before, after = json.loads(json.dumps(fingerprint(old))), json.loads(json.dumps(fingerprint(new)))
    changes = _option_changes(before["options"], after["options"])
    kinds = sorted({kind for kind, _ in before["inputs"] + after["inputs"]})
    for kind in kinds:
        was = [sha for k, sha in before["inputs"] if k == kind]
        now = [sha for k, sha in after["inputs"] if k == kind]
        if was != now:
            changes.append(f"input {kind or '(no kind)'} {_short_value(was)} -> {_short_value(now)}")
    if not changes:
        return "another run"
    more = f", and {len(changes) - limit} more" if len(changes) > limit else ""
    return ", ".join(changes[:limit]) + more


def _option_changes(before: Any, after: Any) -> list[str]:
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return [] if before == after else [f"options {_short_value(before)} -> {_short_value(after)}"]
    absent = object()
    return [
        f"{key} {_short_value(before.get(key, absent))} -> {_short_value(after.get(key, absent))}"
        for key in sorted(before.keys() | after.keys())
        if before.get(key, absent) != after.get(key, absent)
    ]


def _short_value(value: Any, width: int = 40) -> str:
    """A value as a refusal shows it: JSON (strings quoted, so spaces read right), hashes cut to 8
    characters, a one-element list as its element, anything long cut to ``width`` characters."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str) and len(value) >= 32 and all(c in "0123456789abcdef" for c in value):
        return value[:8]
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = "(not set)"
    return text if len(text) <= width else text[: width - 1] + "…"


# The key of the stand-in provenance an existing-output reader returns for a file susx wrote that is
# incomplete, damaged or of another schema version: --overwrite may replace it, nothing may skip on it.
REPLACEABLE = "_susx_replaceable"


def replaceable(reason: str) -> dict[str, Any]:
    """The stand-in provenance of an output of susx's that cannot be used (``reason`` says why)."""
    return {REPLACEABLE: reason}


def foreign_output(path: Path) -> SusxError:
    """The refusal for an output path holding something susx did not write (no --overwrite hint)."""
    return SusxError(
        f"{path} exists and is not a file susx wrote, so susx will not replace it",
        hint="choose another -o/--output, or move that file away",
    )


def schema_problem(found_version: Any, kind: Any = None) -> str | None:
    """Why a file of ``kind`` with this schema version cannot be read (None when it can)."""
    try:
        version = int(found_version)
    except (TypeError, ValueError):
        return "without a readable schema version"
    expected = schema_version(kind)
    return None if version == expected else f"of schema version {version} (this susx reads {expected})"


def existing_json_provenance(path: Path, kind: str, read: Any) -> dict[str, Any] | None:
    """Provenance of the JSON output at ``path`` (None if absent) via ``read(path).provenance``.

    Like ``hdf5.existing_provenance``: a file of susx's (a ``kind`` of 'susx.*') that cannot be read, or
    is of another susx kind, is ``replaceable`` (only with --overwrite); anything else is refused.
    """
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise foreign_output(path) from None
    found = data.get("kind") if isinstance(data, dict) else None
    if not (isinstance(found, str) and found.startswith("susx.")):
        raise foreign_output(path)
    if found != kind:  # another output of susx's: replaced only with --overwrite
        return replaceable(f"a {found} file, not {kind}")
    problem = schema_problem(data.get("schema_version"), found)
    if problem:
        return replaceable(problem)
    try:
        return read(path).provenance
    except (SusxError, KeyError, TypeError, ValueError) as exc:
        return replaceable(f"damaged ({getattr(exc, 'message', exc)})")


def decide_existing(
    path: Path, existing_prov: dict[str, Any] | None, new_prov: dict[str, Any], overwrite: bool
) -> bool:
    """Whether to skip writing ``path``.

    True: a complete output made from the same inputs and options exists (skip and say so).
    False: nothing there, or ``overwrite`` is set (write). Raises when the output exists with other
    options, or is an incomplete or damaged file of susx's, so nothing the user has is replaced
    without ``--overwrite``.
    """
    if existing_prov is None or overwrite:
        return False
    if REPLACEABLE in existing_prov:
        raise SusxError(
            f"{path} exists but is {existing_prov[REPLACEABLE]}",
            hint="susx wrote it: pass --overwrite to replace it, or choose another -o/--output",
        )
    if same_fingerprint(existing_prov, new_prov):
        return True
    raise SusxError(
        f"{path} exists and was made from other inputs or options "
        f"({fingerprint_changes(existing_prov, new_prov)})",
        hint="pass --overwrite to replace it, or choose another -o/--output",
    )


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable read is a set-and-restore
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    # mkstemp makes the file private (0600); an artifact gets the mode any new file of the user gets,
    # so collaborators on a shared cluster can read it when the umask allows.
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:  # disk full, quota, read-only or permission: nothing was replaced
        raise write_error(path, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# A folder output (support set, demo run) replaced with --overwrite is built in a hidden sibling and
# swapped in only once complete, so a failed run leaves the old output as it was.
STAGING_SUFFIX = ".susx-new"
RETIRED_SUFFIX = ".susx-old"


def real_folder(root: Path) -> Path:
    """The folder a link ``root`` points at (``root`` itself otherwise): a replacement is built and swapped
    in beside the real folder, so the link keeps working and nothing renames or removes the link."""
    return root.resolve() if root.is_symlink() and root.is_dir() else root


def staging_dir(root: Path) -> Path:
    """Where a replacement of the folder ``root`` is built (--overwrite) before it is swapped into place."""
    root = real_folder(root)
    return root.with_name(f".{root.name}{STAGING_SUFFIX}")


def _retired_dir(root: Path) -> Path:
    return root.with_name(f".{root.name}{RETIRED_SUFFIX}")


def recover_interrupted_swap(root: Path) -> None:
    """Finish or undo a swap that a crash interrupted (see ``swap_into_place``)."""
    root = real_folder(root)
    retired = _retired_dir(root)
    if not retired.exists():
        return
    if root.exists():
        shutil.rmtree(retired)  # the new folder was already in place: the old one only waited for removal
    else:
        os.replace(retired, root)  # the crash came between the two renames: put the old folder back


def swap_into_place(staging: Path, root: Path) -> None:
    """Replace the folder ``root`` with the complete one at ``staging``: old aside, new in, old removed.

    Each step is a rename in one folder, so after a crash ``recover_interrupted_swap`` finds either the
    old or the new folder in place and never a mixture. A linked ``root`` stays a link: the folder it
    points at is the one replaced. The caller has checked that the old folder holds only susx's files.
    """
    root = real_folder(root)
    retired = _retired_dir(root)
    try:
        if root.exists():
            os.replace(root, retired)
        os.replace(staging, root)
        if retired.exists():
            shutil.rmtree(retired)
    except OSError as exc:
        raise write_error(root, exc) from None


def write_error(path: Path, exc: OSError) -> SusxError:
    """One line for a write that the OS refused (full disk, read-only, a parent that is a file)."""
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    blocking = next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        return SusxError(
            f"could not write {path}: {blocking} is a file, not a folder",
            hint="choose an output path in a folder, or move that file away",
        )
    return SusxError(
        f"could not write {path}: {reason}",
        hint="check free disk space and permissions of that folder, or choose another -o/--output",
    )


def free_space(folder: str | os.PathLike) -> int | None:
    """Free bytes on the file system of ``folder`` (or of its nearest existing parent); None without an
    answer (e.g. a file system without statvfs: the write itself will tell)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def ensure_free_space(path: str | os.PathLike, needed: int) -> None:
    """Refuse to write ``needed`` more bytes near ``path`` when its file system has less free space."""
    folder = Path(path).parent
    free = free_space(folder)
    if free is not None and free < needed:
        raise SusxError(
            f"not enough free disk space in {folder}: {free / 2**20:.1f} MiB left, the next write needs about "
            f"{needed / 2**20:.1f} MiB",
            hint="free some space (or write to another disk) and re-run the same command: it resumes",
        )


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a closed file's data to disk before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    path = Path(path)
    if not path.exists():
        raise SusxError(f"{what} {path} does not exist", hint="check the path")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SusxError(
            f"{path} is not valid JSON ({exc.__class__.__name__})", hint="check the file"
        ) from exc


def read_key_list(path: str | os.PathLike, what: str) -> list[str]:
    """A file of image keys, one a line (blank lines and lines starting with '#' skipped), in file order
    without repeats. A line of `susx inspect --influence` (change, class, key, tab-separated) gives its key."""
    path = Path(path)
    if not path.is_file():
        raise SusxError(f"{what} {path} is not a file", hint="pass a file of image keys, one a line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise SusxError(
            f"{what} {path} is not UTF-8 text", hint="pass a file of image keys, one a line"
        ) from exc
    keys = [line.split("\t")[-1].strip() for line in lines if line.strip() and not line.startswith("#")]
    return list(dict.fromkeys(keys))


def check_header(path: Path, kind: Any, found_version: Any, expected_kind: str | tuple[str, ...]) -> None:
    """Refuse a file of another kind or schema version with a hint on which stage makes the right one."""
    expected = (expected_kind,) if isinstance(expected_kind, str) else expected_kind
    if kind not in expected:
        makers = " or ".join(sorted({STAGE_OF_KIND.get(k, k) for k in expected}))
        got = f"a {kind!s} artifact" if kind else "not a susx artifact"
        raise SusxError(
            f"{path} is {got}, expected {' or '.join(expected)}",
            hint=f"pass a file made by {makers}",
        )
    try:
        version = int(found_version)
    except (TypeError, ValueError):
        version = -1
    if version != schema_version(kind):
        raise SusxError(
            f"{path} has schema version {found_version}, this susx reads version {schema_version(kind)}",
            hint="re-run the stage that made it with this susx version, or use a matching susx",
        )


def to_json_str(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)
