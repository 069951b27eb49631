"""HDF5 feature files (image features, text classifier, predictions): layout, resumable writer, readers."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from susx_cli.artifacts import common
from susx_cli.errors import SusxError

STR = h5py.string_dtype(encoding="utf-8")
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made a feature file; two files mix only if arch, weights and checkpoint agree."""

    arch: str
    pretrained: str | None
    checkpoint_sha256: str | None
    embed_dim: int
    logit_scale: float | None = None
    random_weights: bool = False

    def key(self) -> tuple:
        return (self.arch, self.pretrained, self.checkpoint_sha256, self.embed_dim)

    def describe(self) -> str:
        weights = "random weights" if self.random_weights else (self.pretrained or "checkpoint")
        return f"{self.arch} ({weights}, dim {self.embed_dim})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "pretrained": self.pretrained,
            "checkpoint_sha256": self.checkpoint_sha256,
            "embed_dim": self.embed_dim,
            "logit_scale": self.logit_scale,
            "random_weights": self.random_weights,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelIdentity:
        return cls(
            arch=d["arch"],
            pretrained=d.get("pretrained"),
            checkpoint_sha256=d.get("checkpoint_sha256"),
            embed_dim=int(d["embed_dim"]),
            logit_scale=d.get("logit_scale"),
            random_weights=bool(d.get("random_weights", False)),
        )


def check_same_model(a: ModelIdentity, b: ModelIdentity, what_a: str, what_b: str) -> None:
    if a.key() != b.key():
        raise SusxError(
            f"{what_a} was embedded with {a.describe()} but {what_b} with {b.describe()}",
            hint="embed every input with the same --model and --pretrained",
        )


def _write_header(f: h5py.File, kind: str, prov: dict[str, Any], classes: list[str]) -> None:
    f.attrs["kind"] = kind
    f.attrs["schema_version"] = common.SCHEMA_VERSION
    f.attrs["provenance"] = common.to_json_str(prov)
    f.attrs["complete"] = False
    f.create_dataset("classes", data=np.array(classes, dtype=object), dtype=STR)


def _open_checked(path: Path, expected_kind: str | tuple[str, ...]) -> h5py.File:
    if not path.exists():
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        hint = "it was interrupted: re-run the same command to resume" if partial.exists() else "check the path"
        raise SusxError(f"{path} does not exist", hint=hint)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise SusxError(f"{path} is not a readable HDF5 file", hint="pass a file written by susx") from exc
    try:
        common.check_header(path, _attr_str(f, "kind"), f.attrs.get("schema_version"), expected_kind)
        if not bool(f.attrs.get("complete", False)):
            raise SusxError(f"{path} is incomplete (no completion marker)", hint="re-run the stage that makes it")
    except SusxError:
        f.close()
        raise
    return f


def _attr_str(f: h5py.File, name: str) -> str | None:
    value = f.attrs.get(name)
    if isinstance(value, bytes):
        value = value.decode()
    return value


def _attr_json(f: h5py.File, name: str) -> Any:
    value = _attr_str(f, name)
    return json.loads(value) if value else None


def _strings(ds: h5py.Dataset) -> list[str]:
    return [x.decode() if isinstance(x, bytes) else str(x) for x in ds[()]]


def read_kind(path: Path) -> str | None:
    """The kind attribute of an HDF5 file, or None if it is not one of ours."""
    try:
        with h5py.File(path, "r") as f:
            return _attr_str(f, "kind")
    except OSError:
        return None


# ----------------------------------------------------------------------------------------- image features


@dataclass
class FeatureSet:
    """Image features as read from disk: rows L2-normalised."""

    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64, -1 where unknown
    keys: list[str]
    classes: list[str]
    model: ModelIdentity
    provenance: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    path: Path | None = None

    @property
    def has_labels(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())


class FeatureWriter:
    """Chunked, resumable writer of an image feature file.

    Rows go to ``<path>.partial``; after every chunk the file is flushed and ``items_done`` (the number
    of input items consumed, written rows plus skipped images) is updated, so a killed run resumes from
    the last flushed chunk. ``finish`` sets the completion marker and renames the file into place.
    """

    def __init__(
        self,
        path: Path,
        *,
        dim: int,
        items_total: int,
        classes: list[str],
        model: ModelIdentity,
        prov: dict[str, Any],
        chunk_rows: int = 1024,
        storage_dtype: str = "float32",
    ):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.resumed_from = 0
        self.file = self._open_or_resume(dim, items_total, classes, model, prov, chunk_rows, storage_dtype)

    def _open_or_resume(self, dim, items_total, classes, model, prov, chunk_rows, storage_dtype) -> h5py.File:
        self._chunk_bytes = min(chunk_rows, 4096) * (dim * np.dtype(storage_dtype).itemsize + 8 + 256)
        if self.partial.exists():
            f = None
            try:
                f = h5py.File(self.partial, "a")
                old = _attr_json(f, "provenance") or {}
                if common.same_fingerprint(old, prov) and int(f.attrs["items_total"]) == items_total:
                    self._truncate_to_done(f)
                    if _rows_verified(f, int(f.attrs["rows_done"])):
                        self.resumed_from = int(f.attrs["items_done"])
                        return f
            except (OSError, KeyError, ValueError, RuntimeError):
                pass  # a partial file killed mid-write, damaged by a full disk, or from other options
            if f is not None:
                with contextlib.suppress(Exception):
                    f.close()
            self.partial.unlink()  # it cannot be trusted: start again from the first item
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = h5py.File(self.partial, "w")
        _write_header(f, common.IMAGE_FEATURES, prov, classes)
        f.attrs["model"] = common.to_json_str(model.to_dict())
        f.attrs["normalized"] = True
        f.attrs["dtype"] = storage_dtype
        f.attrs["items_total"] = items_total
        f.attrs["items_done"] = 0
        f.attrs["rows_done"] = 0
        chunk = (min(chunk_rows, 4096), dim)
        f.create_dataset("features", shape=(0, dim), maxshape=(None, dim), dtype=storage_dtype, chunks=chunk)
        f.create_dataset("labels", shape=(0,), maxshape=(None,), dtype="int64", chunks=(chunk[0],))
        f.create_dataset("keys", shape=(0,), maxshape=(None,), dtype=STR, chunks=(chunk[0],))
        f.create_dataset("skipped_keys", shape=(0,), maxshape=(None,), dtype=STR, chunks=(256,))
        f.create_dataset("skipped_reasons", shape=(0,), maxshape=(None,), dtype=STR, chunks=(256,))
        f.flush()
        return f

    @staticmethod
    def _truncate_to_done(f: h5py.File) -> None:
        # Rows written after the last recorded flush belong to an unfinished chunk: drop them.
        rows = int(f.attrs["rows_done"])
        for name in ("features", "labels", "keys"):
            f[name].resize(rows, axis=0)
        skipped = int(f.attrs.get("skipped_done", f["skipped_keys"].shape[0]))
        for name in ("skipped_keys", "skipped_reasons"):
            f[name].resize(skipped, axis=0)

    @property
    def items_done(self) -> int:
        return int(self.file.attrs["items_done"])

    def append(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        keys: list[str],
        items_consumed: int,
        skipped: list[tuple[str, str]] = (),
    ) -> None:
        """Append one chunk: (b, D) features, (b,) labels, b keys; ``items_consumed`` input items used."""
        # Check the room first: HDF5 can corrupt its file (or crash) when a write meets a full disk.
        common.ensure_free_space(self.partial, self._chunk_bytes)
        try:
            self._append(features, labels, keys, items_consumed, skipped)
        except (OSError, RuntimeError) as exc:
            raise SusxError(
                f"could not write {self.partial}: {exc.__class__.__name__}: {exc}"[:300],
                hint="free disk space or fix permissions, then re-run the same command to resume",
            ) from None

    def _append(self, features, labels, keys, items_consumed, skipped) -> None:
        f = self.file
        n0 = f["features"].shape[0]
        b = features.shape[0]
        if b:
            f["features"].resize(n0 + b, axis=0)
            f["features"][n0:] = features.astype(f["features"].dtype, copy=False)
            f["labels"].resize(n0 + b, axis=0)
            f["labels"][n0:] = labels
            f["keys"].resize(n0 + b, axis=0)
            f["keys"][n0:] = np.array(keys, dtype=object)
        if skipped:
            s0 = f["skipped_keys"].shape[0]
            for name, values in (("skipped_keys", [s[0] for s in skipped]), ("skipped_reasons", [s[1] for s in skipped])):
                f[name].resize(s0 + len(skipped), axis=0)
                f[name][s0:] = np.array(values, dtype=object)
        f.flush()
        # The counters are written only after the data is flushed, so they never claim unwritten rows.
        f.attrs["rows_done"] = n0 + b
        f.attrs["skipped_done"] = f["skipped_keys"].shape[0]
        f.attrs["items_done"] = int(f.attrs["items_done"]) + items_consumed
        f.flush()

    def finish(self, extra_attrs: dict[str, Any] | None = None) -> None:
        """Verify every row and key, then set the completion marker and move the file into place."""
        f = self.file
        rows = int(f.attrs["rows_done"])
        done, total = int(f.attrs["items_done"]), int(f.attrs["items_total"])
        if done != total or any(f[name].shape[0] != rows for name in ("features", "labels", "keys")):
            raise SusxError(
                f"{self.partial} holds {done} of {total} items ({rows} rows): not marking it complete",
                hint="re-run the same command to resume",
            )
        if not _rows_verified(f, rows):
            raise SusxError(
                f"{self.partial} has rows that did not read back (empty key or zero features)",
                hint="delete that .partial file and re-run the command",
            )
        common.ensure_free_space(self.partial, 1 << 16)
        for key, value in (extra_attrs or {}).items():
            f.attrs[key] = common.to_json_str(value) if isinstance(value, dict | list) else value
        f.attrs["complete"] = True
        f.flush()
        f.close()
        common.fsync_path(self.partial)
        os.replace(self.partial, self.path)

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()


def _rows_verified(f: h5py.File, rows: int, chunk: int = 65536) -> bool:
    """Whether the first ``rows`` rows read back whole: a non-empty key and a unit-length feature row
    each (a row the disk never received reads as zeros and an empty key)."""
    if any(f[name].shape[0] < rows for name in ("features", "labels", "keys")):
        return False
    for start in range(0, rows, chunk):
        block = np.asarray(f["features"][start : start + chunk], dtype=np.float64)
        if not np.all(np.abs(np.linalg.norm(block, axis=1) - 1.0) <= 1e-2):
            return False
        if not all(len(k) for k in f["keys"][start : start + chunk]):
            return False
    return True


def read_features(path: str | Path) -> FeatureSet:
    path = Path(path)
    with _open_checked(path, common.IMAGE_FEATURES) as f:
        features = f["features"][()].astype(np.float32)
        labels = f["labels"][()].astype(np.int64)
        keys = _strings(f["keys"])
        classes = _strings(f["classes"])
        skipped = [
            {"key": k, "reason": r}
            for k, r in zip(_strings(f["skipped_keys"]), _strings(f["skipped_reasons"]), strict=True)
        ]
        return FeatureSet(
            features=features,
            labels=labels,
            keys=keys,
            classes=classes,
            model=ModelIdentity.from_dict(_attr_json(f, "model")),
            provenance=_attr_json(f, "provenance"),
            skipped=skipped,
            path=path,
        )


def read_feature_model(path: str | Path) -> ModelIdentity:
    """The model identity of a complete image feature file, without reading its rows."""
    with _open_checked(Path(path), common.IMAGE_FEATURES) as f:
        return ModelIdentity.from_dict(_attr_json(f, "model"))


def iter_feature_chunks(path: str | Path, chunk_rows: int):
    """Yield (first row index, (b, D) float32 rows) of a feature file, ``chunk_rows`` rows at a time,
    so files larger than memory can be scanned; raises on an empty file."""
    path = Path(path)
    with _open_checked(path, common.IMAGE_FEATURES) as f:
        ds = f["features"]
        if ds.shape[0] == 0:
            raise SusxError(f"{path} holds no image features", hint="embed at least one readable image")
        for start in range(0, ds.shape[0], chunk_rows):
            yield start, np.ascontiguousarray(ds[start : start + chunk_rows], dtype=np.float32)


def feature_rows(path: str | Path) -> int:
    with _open_checked(Path(path), common.IMAGE_FEATURES) as f:
        return int(f["features"].shape[0])


def read_keys_at(path: str | Path, indices) -> dict[int, str]:
    """Keys of the given row indices of a feature file."""
    wanted = sorted({int(i) for i in indices})
    with _open_checked(Path(path), common.IMAGE_FEATURES) as f:
        values = f["keys"][wanted] if wanted else []
    return {i: (v.decode() if isinstance(v, bytes) else str(v)) for i, v in zip(wanted, values, strict=True)}


def existing_provenance(path: Path, kind: str) -> dict[str, Any] | None:
    """Provenance of a complete HDF5 artifact at ``path`` (None if absent); refuses a wrong kind."""
    if not path.exists():
        return None
    with _open_checked(path, kind) as f:
        return _attr_json(f, "provenance")


# ----------------------------------------------------------------------------------------- text classifier


@dataclass
class TextClassifier:
    """Per-class text embeddings: row c is the L2-normalised mean of class c's normalised text embeddings."""

    weights: np.ndarray  # (C, D) float32
    num_texts: np.ndarray  # (C,) int64
    classes: list[str]
    model: ModelIdentity
    pool: str
    provenance: dict[str, Any]
    path: Path | None = None


def write_text_classifier(path: Path, tc: TextClassifier) -> None:
    with common.atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            _write_header(f, common.TEXT_CLASSIFIER, tc.provenance, tc.classes)
            f.attrs["model"] = common.to_json_str(tc.model.to_dict())
            f.attrs["pool"] = tc.pool
            f.attrs["normalized"] = True
            f.create_dataset("weights", data=tc.weights.astype(np.float32))
            f.create_dataset("num_texts", data=tc.num_texts.astype(np.int64))
            f.attrs["complete"] = True


def read_text_classifier(path: str | Path) -> TextClassifier:
    path = Path(path)
    with _open_checked(path, common.TEXT_CLASSIFIER) as f:
        return TextClassifier(
            weights=f["weights"][()].astype(np.float32),
            num_texts=f["num_texts"][()].astype(np.int64),
            classes=_strings(f["classes"]),
            model=ModelIdentity.from_dict(_attr_json(f, "model")),
            pool=_attr_str(f, "pool"),
            provenance=_attr_json(f, "provenance"),
            path=path,
        )


# ----------------------------------------------------------------------------------------- predictions


@dataclass
class Predictions:
    predicted: np.ndarray  # (n,) int64
    top5: np.ndarray  # (n, k) int64, k = min(5, C)
    scores: np.ndarray  # (n, k) float32: logits of the top-k classes
    labels: np.ndarray  # (n,) int64, -1 where unknown
    keys: list[str]
    classes: list[str]
    method: str
    metrics: dict[str, Any]
    provenance: dict[str, Any]
    path: Path | None = None


def write_predictions(path: Path, p: Predictions) -> None:
    with common.atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            _write_header(f, common.PREDICTIONS, p.provenance, p.classes)
            f.attrs["method"] = p.method
            f.attrs["metrics"] = common.to_json_str(p.metrics)
            f.create_dataset("predicted", data=p.predicted.astype(np.int64))
            f.create_dataset("top5", data=p.top5.astype(np.int64))
            f.create_dataset("top5_scores", data=p.scores.astype(np.float32))
            f.create_dataset("labels", data=p.labels.astype(np.int64))
            f.create_dataset("keys", data=np.array(p.keys, dtype=object), dtype=STR)
            f.attrs["complete"] = True


def read_predictions(path: str | Path) -> Predictions:
    path = Path(path)
    with _open_checked(path, common.PREDICTIONS) as f:
        return Predictions(
            predicted=f["predicted"][()],
            top5=f["top5"][()],
            scores=f["top5_scores"][()],
            labels=f["labels"][()],
            keys=_strings(f["keys"]),
            classes=_strings(f["classes"]),
            method=_attr_str(f, "method"),
            metrics=_attr_json(f, "metrics"),
            provenance=_attr_json(f, "provenance"),
            path=path,
        )


def describe(path: Path) -> dict[str, Any]:
    """A summary of any susx HDF5 artifact for `susx inspect` (complete or not)."""
    with h5py.File(path, "r") as f:
        out: dict[str, Any] = {
            "path": str(path),
            "kind": _attr_str(f, "kind"),
            "schema_version": int(f.attrs.get("schema_version", -1)),
            "complete": bool(f.attrs.get("complete", False)),
            "datasets": {name: {"shape": list(f[name].shape), "dtype": str(f[name].dtype)} for name in f},
        }
        if "classes" in f:
            classes = _strings(f["classes"])
            out["num_classes"] = len(classes)
            out["classes"] = classes[:10] + (["..."] if len(classes) > 10 else [])
        for attr in ("model", "provenance", "metrics"):
            if attr in f.attrs:
                out[attr] = _attr_json(f, attr)
        for attr in ("pool", "method", "normalized", "dtype", "items_done", "items_total"):
            if attr in f.attrs:
                value = f.attrs[attr]
                out[attr] = value.item() if hasattr(value, "item") else (value.decode() if isinstance(value, bytes) else value)
        if "skipped_keys" in f:
            out["skipped"] = int(f["skipped_keys"].shape[0])
        return out
