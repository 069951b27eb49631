"""The demo's output folder: the marker that lists every file a demo run wrote, and the decision whether
an existing folder may be replaced (--overwrite removes only an earlier demo run's files)."""

from __future__ import annotations

import json
from pathlib import Path

from susx_cli.artifacts import common
from susx_cli.errors import SusxError

# Written last in a demo folder: the list of every file the run wrote, all --overwrite may remove.
MARKER = "_DEMO.json"
DEMO_KIND = "susx.demo"


def _listing(root: Path) -> list[str]:
    """Every file and link under ``root``, as sorted relative POSIX paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_symlink() or not p.is_dir())


def write_marker(root: Path) -> None:
    """Record every file the demo wrote in ``root``; written last, so its presence means complete."""
    common.atomic_write_json(root / MARKER, {"kind": DEMO_KIND, "files": _listing(root)})


def demo_files(root: Path) -> set[str] | None:
    """The files a completed demo run recorded in ``root``, or None when ``root`` has no readable marker."""
    try:
        data = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("kind") != DEMO_KIND or not isinstance(data.get("files"), list):
        return None
    return {f for f in data["files"] if isinstance(f, str)}


def foreign_entries(root: Path, written: set[str]) -> list[str]:
    """Files in ``root`` the demo did not write, and folders holding none of its files."""
    written = written | {MARKER}
    foreign = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() and not path.is_symlink():
            if not any(w.startswith(rel + "/") for w in written):
                foreign.append(rel + "/")
        elif rel not in written:
            foreign.append(rel)
    return foreign


def check_output(root: Path, overwrite: bool) -> None:
    """Refuse an output folder the demo may not replace: --overwrite removes only an earlier demo run."""
    common.recover_interrupted_swap(root)
    if root.is_symlink() and not root.exists():
        raise common.foreign_output(root)  # a dangling link: the demo would write wherever it points
    if root.exists() and not root.is_dir():
        raise SusxError(
            f"{root} exists and is a file, not a folder, so the demo will not write there",
            hint="choose a new or empty -o folder",
        )
    if not root.exists() or not any(root.iterdir()):
        return
    written = demo_files(root)
    if written is None:
        raise SusxError(
            f"{root} is not empty and was not made by susx demo, so the demo will not write there",
            hint="choose a new or empty -o folder",
        )
    if not overwrite:
        raise SusxError(
            f"{root} is not empty: it holds an earlier demo run",
            hint="pass --overwrite to replace it, or choose another -o",
        )
    foreign = foreign_entries(root, written)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise SusxError(
            f"{root} holds files susx demo did not write ({shown}); --overwrite only replaces what the demo wrote",
            hint="move those files away first, or choose another -o folder",
        )
