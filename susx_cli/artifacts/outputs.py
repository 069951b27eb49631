"""The one guarded writer: whether susx may write each output path, and the marks that make a file
susx's own.

Every command states its input and output paths once (``check_paths``) and asks, for each file it is
about to write, whether the file at that path may be replaced (``claim``) or appended to
(``claim_append``). The rules:

- an output path that is also an input of the same command, lies inside an input folder, or is given
  for two outputs of the command is refused;
- an existing file susx did not write is never replaced or appended to, with or without --overwrite;
- an existing susx output of another kind is replaced only with --overwrite;
- a report or picture (``REPLACEABLE_BY_WRITER``) is replaced by the command that wrote it, so
  `susx report -o r.md` can be re-run; its other outputs need --overwrite where the command has one.

How a file says it is susx's own (no sidecar files, so a copied file keeps its mark):

- HDF5 and JSON artifacts: their ``kind`` attribute or key (``susx.*``), read by the artifact's reader;
- PNG: a ``tEXt`` chunk with keyword ``susx`` whose text is the picture's kind (``susx.heatmap``), written
  by ``png_metadata`` and read by ``png_kind`` (PNG chunks survive copies, and image tools keep them);
- CSV: a first line ``# susx.KIND (written by susx VERSION)``; pandas reads such a file with
  ``skiprows=1`` (``comment="#"`` would also cut cells holding ``#``);
- Markdown: a first line ``<!-- susx.KIND (written by susx VERSION) -->``, invisible when rendered;
- a JSON-lines file susx appends to (the LLM answer cache): a first line ``{"susx": KIND, ...}``.

``writing(path)`` turns an OSError (full disk, read-only folder, a parent that is a file, permissions)
into one ``error:`` line naming the path, for writers that cannot go through ``common.atomic_path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from susx_cli._version import __version__
from susx_cli.artifacts import common
from susx_cli.errors import SusxError

# Kinds of the reports and pictures susx writes (artifact kinds live in common).
HEATMAP = "susx.heatmap"
CONTACT_SHEET = "susx.contact_sheet"
CONFUSION = "susx.confusion"
CHART = "susx.chart"
REPORT_MARKDOWN = "susx.report_markdown"
REPORT_CSV = "susx.report_csv"
REPORT_LATEX = "susx.report_latex"
REPORT_LONG_CSV = "susx.report_long_csv"
PREDICTIONS_CSV = "susx.predictions_csv"
LLM_CACHE = "susx.llm_cache"

REPLACEABLE_BY_WRITER = (
    HEATMAP,
    CONTACT_SHEET,
    CONFUSION,
    CHART,
    REPORT_MARKDOWN,
    REPORT_CSV,
    REPORT_LATEX,
    REPORT_LONG_CSV,
)

PNG_KEYWORD = "susx"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------- paths of one command


def check_paths(inputs: Iterable[Path | None], outputs: Iterable[tuple[str, Path | None]]) -> None:
    """Refuse an output that is an input, lies inside an input folder, or is named twice.

    ``outputs`` pairs each path with the option that named it (for the message), e.g. ("--csv", path).
    """
    given = [(option, Path(path)) for option, path in outputs if path is not None]
    sources = [Path(p).expanduser().resolve() for p in inputs if p is not None]
    seen: dict[Path, str] = {}
    for option, path in given:
        out = path.expanduser().resolve()
        for source in sources:
            if out == source or source in out.parents:
                raise SusxError(
                    f"{option} {path} is also an input of this command (or lies inside one), "
                    "so writing it would destroy that input",
                    hint=f"give {option} a path of its own",
                )
        if out in seen:
            raise SusxError(
                f"{seen[out]} and {option} both name {path}; each output needs a path of its own",
                hint=f"give {option} another path",
            )
        seen[out] = option


# --------------------------------------------------------------------------------------------- the marks


def png_metadata(kind: str) -> dict[str, str]:
    """The PNG text entries that mark a picture of ``kind`` as susx's (Pillow ``PngInfo`` or matplotlib
    ``metadata=``)."""
    return {PNG_KEYWORD: kind, "Software": f"susx {__version__}"}


def png_kind(path: Path) -> str | None:
    """The kind a PNG's ``susx`` tEXt chunk records; None for a PNG without it or anything else."""
    try:
        with open(path, "rb") as handle:
            if handle.read(8) != _PNG_SIGNATURE:
                return None
            while header := handle.read(8):
                if len(header) < 8:
                    return None
                length, name = struct.unpack(">I4s", header)
                if name == b"tEXt" and length < 1 << 16:
                    keyword, _, text = handle.read(length).partition(b"\x00")
                    if keyword == PNG_KEYWORD.encode():
                        return text.decode("latin-1")
                    handle.seek(4, os.SEEK_CUR)
                elif name == b"IEND":
                    return None
                else:
                    handle.seek(length + 4, os.SEEK_CUR)
    except OSError:
        return None
    return None


# The comment each text form opens its first line with (and closes it with).
TEXT_COMMENTS = {"csv": ("# ", ""), "markdown": ("<!-- ", " -->"), "latex": ("% ", "")}


def text_mark(kind: str, form: str) -> str:
    """The first line that marks a CSV, Markdown or LaTeX (``form``) file as susx's."""
    start, end = TEXT_COMMENTS[form]
    return f"{start}{kind} (written by susx {__version__}){end}\n"


def text_kind(path: Path) -> str | None:
    """The kind the first line of a CSV, Markdown or LaTeX file of susx's records; None otherwise."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline(400).decode("utf-8", "replace").strip()
    except OSError:
        return None
    for start, end in TEXT_COMMENTS.values():
        if first.startswith(start + "susx.") and first.endswith(end):
            return first[len(start) :].split(" ", 1)[0]
    return None


def jsonl_header(kind: str) -> dict[str, object]:
    """The first row of a JSON-lines file susx appends to."""
    return {"susx": kind, "schema_version": common.SCHEMA_VERSION}


def jsonl_kind(path: Path) -> str | None:
    """The kind the first row of a JSON-lines file of susx's records; None otherwise."""
    try:
        with open(path, "rb") as handle:
            row = json.loads(handle.readline(4096))
    except (OSError, ValueError):
        return None
    return row.get("susx") if isinstance(row, dict) and isinstance(row.get("susx"), str) else None


def _found_kind(path: Path) -> str | None:
    return png_kind(path) or text_kind(path) or jsonl_kind(path)


# --------------------------------------------------------------------------------------------- the rules


def claim(path: Path, kind: str, *, overwrite: bool = False, option: str = "-o/--output") -> None:
    """Whether the file of ``kind`` may be written at ``path`` (returns) or not (raises).

    Nothing there: yes. A folder, or a file susx did not write: never. A susx file of ``kind`` that the
    writing command may replace (``REPLACEABLE_BY_WRITER``), or any susx file with ``overwrite``: yes.
    Readers of HDF5 and JSON artifacts make the same decision through ``common.decide_existing``.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise common.foreign_output(path)  # a dangling link: writing would follow it somewhere else
    if not path.exists():
        return
    if path.is_dir():
        raise SusxError(f"{path} is a folder", hint=f"give {option} a file name")
    found = _found_kind(path)
    if found is None:
        raise SusxError(
            f"{path} exists and is not a file susx wrote, so susx will not replace it",
            hint=f"choose another {option}, or move that file away",
        )
    if overwrite or (found == kind and kind in REPLACEABLE_BY_WRITER):
        return
    what = "an earlier output of this kind" if found == kind else f"a {found} file of susx"
    raise SusxError(
        f"{path} exists and holds {what}",
        hint=f"pass --overwrite to replace it, or choose another {option}",
    )


def claim_append(path: Path, kind: str, *, option: str) -> bool:
    """Whether susx may append to ``path``: True when it holds a JSON-lines file of susx's of ``kind``,
    False when there is nothing yet (the caller writes the header first); raises otherwise."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return False
    if path.is_file() and path.stat().st_size == 0:
        return False
    if path.is_dir() or jsonl_kind(path) != kind:
        raise SusxError(
            f"{path} exists and is not a {kind} file susx wrote, so susx will not add to it",
            hint=f"choose another {option}, or move that file away",
        )
    return True


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError of the block into one line naming ``path`` (full disk, read-only, not a folder)."""
    try:
        yield
    except OSError as exc:
        raise common.write_error(Path(path), exc) from None
