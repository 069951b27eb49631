"""Support folders: `<class_index:04d>_<slug>/<key>.<ext>` images, manifest.jsonl, classes.json, marker.

Work is written per image (atomic rename) and then recorded in the shard's part manifest, so the
manifest never names an image that is not fully on disk. When every part is finished, the parts are
merged into `manifest.jsonl` and the completion marker `_SUCCESS.json` is written last.
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common
from susx_cli.artifacts.common import recover_interrupted_swap, staging_dir, swap_into_place  # noqa: F401 (re-exported)
from susx_cli.artifacts.jsonl import JsonlAppender, read_jsonl, scan_jsonl, write_jsonl
from susx_cli.classnames import slug
from susx_cli.errors import SusxError

MARKER = "_SUCCESS.json"
CLASSES_FILE = "classes.json"
MANIFEST = "manifest.jsonl"
PARTS = "parts"
REQUIRED_FIELDS = ("path", "class_index", "class_name", "source", "key", "sha256", "width", "height")


@dataclass
class SupportSet:
    root: Path
    classes: list[str]
    rows: list[dict[str, Any]]
    provenance: dict[str, Any]
    summary: dict[str, Any]

    def counts(self) -> list[int]:
        per = Counter(int(r["class_index"]) for r in self.rows)
        return [per.get(i, 0) for i in range(len(self.classes))]


def class_dir_name(index: int, name: str) -> str:
    return f"{index:04d}_{slug(name)}"


def part_name(shard_index: int, num_shards: int) -> str:
    return f"manifest-{shard_index:05d}-of-{num_shards:05d}.jsonl"


_PART = re.compile(r"manifest-(\d{5})-of-(\d{5})\.jsonl")


def recorded_shard_counts(root: Path) -> set[int]:
    """The shard counts the part manifests of ``root`` were written with (one, unless runs were mixed)."""
    names = (p.name for p in (Path(root) / PARTS).glob("manifest-*-of-*.jsonl"))
    return {int(m.group(2)) for m in map(_PART.fullmatch, names) if m}


def is_support_dir(path: Path) -> bool:
    return path.is_dir() and (path / CLASSES_FILE).is_file()


def existing_provenance(root: Path) -> dict[str, Any] | None:
    """Provenance of a complete support folder at ``root``; None when there is none yet."""
    if not (root / MARKER).exists():
        return None
    data = common.read_json(root / CLASSES_FILE, "support classes file")
    common.check_header(root, data.get("kind"), data.get("schema_version"), common.SUPPORT_SET)
    return {k: data.get(k) for k in ("tool", "created", "options", "inputs")}


def _written_paths(root: Path) -> set[str]:
    """Every relative path susx writes in a support folder: its files and the images its manifests name."""
    owned = {CLASSES_FILE, MARKER, MANIFEST}
    manifests = [root / MANIFEST, *(root / PARTS).glob("manifest-*.jsonl")]
    for manifest in manifests:
        owned.update(
            str(r.get("path")) for r in read_jsonl(manifest) if common.is_safe_relative(r.get("path"))
        )
    return owned


# What susx writes under parts/: the part manifests with their .done markers, and one working-state
# folder per retrieval shard (``shard_state``: <source>-<i>-of-<n>/, whose contents img2dataset shapes).
_BOOKKEEPING = re.compile(
    rf"{PARTS}/(manifest-\d{{5}}-of-\d{{5}}\.jsonl(\.done)?|[a-z0-9]+-\d{{5}}-of-\d{{5}}/.+)"
)


def _is_bookkeeping(rel: str) -> bool:
    return _BOOKKEEPING.fullmatch(rel) is not None


def foreign_files(root: Path) -> list[str]:
    """Files in ``root`` that susx did not write (not in its manifests, not its own bookkeeping)."""
    owned = _written_paths(root)
    foreign = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        ours = (
            rel in owned or _is_bookkeeping(rel) or (path.name.startswith(".") and path.name.endswith(".tmp"))
        )
        if not ours:
            foreign.append(rel)
    return foreign


def holds_no_image(root: Path, classes_data: Any) -> bool:
    """Whether ``root`` is an unfinished support folder of susx's in which no image was recorded: no
    marker, no manifest or part row, and no file susx did not write (so restarting it loses nothing)."""
    if not isinstance(classes_data, dict) or classes_data.get("kind") != common.SUPPORT_SET:
        return False
    if (root / MARKER).exists() or read_jsonl(root / MANIFEST):
        return False
    if any(read_jsonl(part) for part in (root / PARTS).glob("manifest-*.jsonl")):
        return False
    return not foreign_files(root)


def check_replaceable(root: Path) -> None:
    """Refuse --overwrite of a folder unless it is a support set susx made and holds nothing else."""
    data = common.read_json(root / CLASSES_FILE) if (root / CLASSES_FILE).is_file() else None
    if not isinstance(data, dict) or data.get("kind") != common.SUPPORT_SET:
        raise SusxError(
            f"{root} is not a support set made by susx, so --overwrite will not replace it",
            hint="choose a new or empty -o/--output folder",
        )
    foreign = foreign_files(root)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise SusxError(
            f"{root} holds files susx did not write ({shown}); --overwrite only replaces what susx wrote",
            hint="move those files away first, or choose another -o/--output folder",
        )


class SupportWriter:
    """Writes one shard's images into a support folder; merges all parts once every shard is done."""

    def __init__(
        self,
        root: Path,
        classes: list[str],
        prov: dict[str, Any],
        *,
        shard_index: int = 0,
        num_shards: int = 1,
        overwrite: bool = False,
    ):
        self.root = Path(root)
        self.classes = classes
        self.prov = prov
        self.shard_index = shard_index
        self.num_shards = num_shards
        self._prepare(overwrite)
        self.part_path = self.root / PARTS / part_name(shard_index, num_shards)
        self.done: dict[tuple[int, str], dict[str, Any]] = {}
        for row in read_jsonl(self.part_path):
            # Trust a recorded image only if its file is still there with the recorded size.
            if (self.root / row["path"]).is_file() and (self.root / row["path"]).stat().st_size == row.get(
                "bytes"
            ):
                self.done[(int(row["class_index"]), row["key"])] = row
        self._rewrite_part()
        self._part = JsonlAppender(self.part_path)
        self._added = 0  # images recorded by this run

    def _prepare(self, overwrite: bool) -> None:
        root = self.root
        classes_file = root / CLASSES_FILE
        if root.exists() and not root.is_dir():
            raise SusxError(f"{root} exists and is not a folder", hint="choose another -o/--output")
        # Hidden names are temporary files: another shard (torchrun rank, array task) may be writing
        # classes.json into this folder at this very moment.
        if root.exists() and any(not p.name.startswith(".") for p in root.iterdir()):
            if not classes_file.exists():
                raise SusxError(
                    f"{root} is a non-empty folder that is not a susx support set",
                    hint="choose an empty or new -o/--output folder",
                )
            if not self._same_run(common.read_json(classes_file)):
                if overwrite:
                    shutil.rmtree(root)
                else:
                    self._restart_unfinished()
            elif overwrite and (root / MARKER).exists():
                shutil.rmtree(root)
        if not classes_file.exists():
            self._write_classes()
        (root / PARTS).mkdir(parents=True, exist_ok=True)  # after classes.json: see the check above

    def _write_classes(self) -> None:
        common.atomic_write_json(
            self.root / CLASSES_FILE,
            {
                "kind": common.SUPPORT_SET,
                "schema_version": common.SCHEMA_VERSION,
                **self.prov,
                "classes": self.classes,
                "folders": [class_dir_name(i, n) for i, n in enumerate(self.classes)],
            },
        )

    def _same_run(self, data: Any) -> bool:
        return (
            isinstance(data, dict)
            and common.same_fingerprint(data, self.prov)
            and data.get("classes") == self.classes
        )

    def _changes(self, data: Any) -> str:
        """What differs between the recorded run ``data`` and this one, for the refusal."""
        if not isinstance(data, dict):
            return "its record is unreadable"
        if common.same_fingerprint(data, self.prov):
            return "another class list"
        return common.fingerprint_changes(data, self.prov)

    def _restart_unfinished(self) -> None:
        """Start this folder again with this run's options when the run that made it recorded no image
        (it failed before writing anything); refuse otherwise: its images are kept until --overwrite.

        Shards of one run start together: the first one restarts the folder under a short lock and the
        others, waiting for it, then find their own options recorded.
        """
        from susx_cli.artifacts.lock import output_lock

        root = self.root
        with output_lock(root.with_name(f"{root.name}.restart"), wait=True):
            data = common.read_json(root / CLASSES_FILE)
            if self._same_run(data):
                return
            if not holds_no_image(root, data):
                raise SusxError(
                    f"{root} holds a support set made from other inputs or options ({self._changes(data)})",
                    hint="pass --overwrite to replace it, or choose another -o/--output",
                )
            # Its parts hold no row, only the failed run's bookkeeping (empty parts, shard state):
            # drop them so nothing of the other options is resumed, then record this run's options.
            shutil.rmtree(root / PARTS, ignore_errors=True)
            self._write_classes()

    def _rewrite_part(self) -> None:
        # Drop torn lines and rows whose image vanished, so the part lists only complete images (in the
        # order they were written: a resumed part reads like one written in a single run).
        write_jsonl(self.part_path, list(self.done.values()))

    def class_dir(self, class_index: int) -> Path:
        return self.root / class_dir_name(class_index, self.classes[class_index])

    def is_done(self, class_index: int, key: str) -> bool:
        return (class_index, key) in self.done

    def add(
        self,
        class_index: int,
        key: str,
        data: bytes,
        ext: str,
        fields: dict[str, Any],
        link_to: Path | None = None,
    ) -> dict[str, Any]:
        """Store one encoded image (or a symlink to ``link_to``, whose bytes are ``data``) and record it.

        ``fields`` holds the source's own manifest fields (prompt, seed, URL, scores, ...).
        """
        from PIL import Image

        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", key):
            raise SusxError(f"internal: unsafe image key {key!r}")
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
        rel = f"{class_dir_name(class_index, self.classes[class_index])}/{key}.{ext}"
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if link_to is None:
            common.atomic_write_bytes(target, data)
        else:
            tmp = target.with_name(f".{target.name}.link.tmp")
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()
            os.symlink(Path(link_to).resolve(), tmp)
            os.replace(tmp, target)
        row = {
            "path": rel,
            "class_index": class_index,
            "class_name": self.classes[class_index],
            "key": key,
            "sha256": common.sha256_bytes(data),
            "bytes": len(data),
            "width": width,
            "height": height,
            **fields,
        }
        self._part.append(row)
        self.done[(class_index, key)] = row
        self._added += 1
        return row

    def finish(self, summary: dict[str, Any] | None = None, *, merge: bool = True) -> bool:
        """Mark this shard done; merge and write the completion marker if every shard is (and ``merge``).
        Returns merged.

        A shard found done already with the same rows (a run that died while joining, rerun with nothing
        left to add) keeps the summary that run recorded, so the joined set does not depend on where the
        run died.
        """
        self._part.close()
        done_file = self.root / PARTS / (part_name(self.shard_index, self.num_shards) + ".done")
        recorded = common.read_json(done_file) if done_file.exists() else {}
        if self._added or recorded.get("rows") != len(self.done):
            common.atomic_write_json(done_file, {"rows": len(self.done), **(summary or {})})
        return merge and merge_parts(self.root, self.num_shards)

    def close(self) -> None:
        if not self._part.closed:
            self._part.close()


def merge_parts(root: Path, num_shards: int) -> bool:
    """Join the part manifests of ``num_shards`` finished shards into manifest.jsonl, marker last.

    The marker holds each shard's recorded summary, and a single shard's at the top level as well: it
    is read from the done files, so the marker is the same whichever run joins the parts."""
    root = Path(root)
    parts = [root / PARTS / part_name(i, num_shards) for i in range(num_shards)]
    if not all(p.with_name(p.name + ".done").exists() for p in parts):
        return False
    rows = [r for p in parts for r in _finished_part_rows(p)]
    keys = Counter((int(r["class_index"]), r["key"]) for r in rows)
    repeated = [key for key, n in keys.items() if n > 1]
    if repeated:
        raise SusxError(
            f"{root}: the part manifests record image {repeated[0][1]!r} of class {repeated[0][0]} "
            f"{keys[repeated[0]]} times",
            hint="the parts were damaged or mixed; re-run `susx curate` with --overwrite",
        )
    rows.sort(key=lambda r: (int(r["class_index"]), r.get("order", 0), r["key"]))
    data = common.read_json(root / CLASSES_FILE)
    classes = data["classes"]
    write_jsonl(root / MANIFEST, rows)
    per = Counter(int(r["class_index"]) for r in rows)
    shard_summaries = [common.read_json(p.with_name(p.name + ".done")) for p in parts]
    marker = {
        "complete": True,
        "images": len(rows),
        "per_class": [per.get(i, 0) for i in range(len(classes))],
        "num_shards": num_shards,
        "manifest_sha256": common.sha256_file(root / MANIFEST),
        "shards": shard_summaries,
        **({k: v for k, v in shard_summaries[0].items() if k != "rows"} if num_shards == 1 else {}),
    }
    common.atomic_write_json(root / MARKER, marker)
    return True


def _finished_part_rows(part: Path) -> list[dict[str, Any]]:
    """The rows of a finished shard's part manifest, refused unless they are exactly the rows its
    done-record counted (a torn, truncated or duplicated part would otherwise be merged silently)."""
    rows, torn = scan_jsonl(part)
    done = common.read_json(part.with_name(part.name + ".done"), "support part done-record")
    recorded = done.get("rows") if isinstance(done, dict) else None
    if torn or not isinstance(recorded, int) or recorded != len(rows):
        raise SusxError(
            f"{part}: {len(rows)} readable rows ({torn} unreadable), but its done-record counts {recorded}",
            hint="the part was changed after its shard finished; re-run that shard's `susx curate` "
            "with --overwrite",
        )
    return rows


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_row_numbers(root: Path, row: dict[str, Any]) -> None:
    """Refuse a manifest row whose numbers cannot be what susx recorded: a class index that is not an
    integer, a width or height under 1, a negative byte count, a NaN or infinite score."""
    problem = None
    if not _is_int(row["class_index"]):
        problem = f"class_index {row['class_index']!r} is not an integer"
    elif not all(_is_int(row[k]) and row[k] >= 1 for k in ("width", "height")):
        problem = f"size {row['width']!r}x{row['height']!r} is not a positive width and height"
    elif "bytes" in row and not (_is_int(row["bytes"]) and row["bytes"] >= 0):
        problem = f"byte count {row['bytes']!r} is not a count"
    elif row.get("score") is not None and not (
        isinstance(row["score"], (int, float)) and math.isfinite(row["score"])
    ):
        problem = f"score {row['score']!r} is not a finite number"
    if problem:
        raise SusxError(f"{root}/{MANIFEST}: row {row['path']}: {problem}", hint="re-create the support set")


def _check_manifest(root: Path, rows: list[dict[str, Any]], torn: int, marker: Any) -> None:
    """Refuse a manifest that is not the one the completion marker was written for (rows and sha256)."""
    images = marker.get("images") if isinstance(marker, dict) else None
    digest = marker.get("manifest_sha256") if isinstance(marker, dict) else None
    problem = None
    if torn:
        problem = f"{torn} unreadable line(s)"
    elif images != len(rows):
        problem = f"{len(rows)} rows where its {MARKER} records {images}"
    elif digest != common.sha256_file(root / MANIFEST):
        problem = f"contents differ from the sha256 its {MARKER} records"
    if problem:
        raise SusxError(
            f"{root}/{MANIFEST} does not match its completion marker: {problem}",
            hint="the manifest was changed after the set was made; re-create the support set "
            "(`susx curate ... --overwrite`)",
        )


def read_support(root: str | Path) -> SupportSet:
    root = Path(root)
    if not root.is_dir():
        raise SusxError(f"support folder {root} does not exist", hint="make one with `susx curate`")
    if not (root / CLASSES_FILE).exists():
        raise SusxError(
            f"{root} is not a susx support folder (no {CLASSES_FILE})", hint="make one with `susx curate`"
        )
    data = common.read_json(root / CLASSES_FILE)
    common.check_header(root, data.get("kind"), data.get("schema_version"), common.SUPPORT_SET)
    if not (root / MARKER).exists():
        raise SusxError(
            f"support folder {root} is incomplete (no {MARKER})",
            hint="re-run the same `susx curate` command to finish it, or `susx merge` once all shards are done",
        )
    classes = data["classes"]
    rows, torn = scan_jsonl(root / MANIFEST)
    for row in rows:
        missing = [k for k in REQUIRED_FIELDS if k not in row]
        if missing:
            raise SusxError(f"{root}/{MANIFEST}: a row lacks {missing}", hint="re-create the support set")
        if not common.is_safe_relative(row["path"]):
            raise SusxError(
                f"{root}/{MANIFEST}: row path {row['path']!r} is absolute or leaves the support folder",
                hint="a manifest names images inside its own folder only; re-create the support set",
            )
        _check_row_numbers(root, row)
        ci = row["class_index"]
        if not 0 <= ci < len(classes) or classes[ci] != row["class_name"]:
            raise SusxError(
                f"{root}/{MANIFEST}: row {row['path']} has class {ci} {row['class_name']!r}, not in classes.json",
                hint="re-create the support set",
            )
    marker = common.read_json(root / MARKER, "support completion marker")
    _check_manifest(root, rows, torn, marker)
    return SupportSet(
        root=root,
        classes=classes,
        rows=rows,
        provenance={k: data.get(k) for k in ("tool", "created", "options", "inputs")},
        summary=marker,
    )


def describe(root: Path) -> dict[str, Any]:
    data = common.read_json(root / CLASSES_FILE)
    complete = (root / MARKER).exists()
    out: dict[str, Any] = {
        "path": str(root),
        "kind": data.get("kind"),
        "schema_version": data.get("schema_version"),
        "complete": complete,
        "num_classes": len(data.get("classes", [])),
        "classes": data.get("classes", [])[:10],
        "provenance": {k: data.get(k) for k in ("tool", "created", "options", "inputs")},
    }
    if complete:
        marker = common.read_json(root / MARKER)
        out["images"] = marker.get("images")
        out["per_class"] = marker.get("per_class")
        out["sources"] = dict(Counter(r.get("source") for r in read_jsonl(root / MANIFEST)))
    else:
        parts = sorted((root / PARTS).glob("manifest-*.jsonl"))
        out["images_so_far"] = sum(len(read_jsonl(p)) for p in parts)
        out["parts"] = [p.name for p in parts]
    return out
