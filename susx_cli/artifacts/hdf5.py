"""HDF5 feature files (image features, text classifier, predictions): layout, resumable writer, readers."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from susx_cli.artifacts import common
from susx_cli.artifacts.schema import ModelIdentity
from susx_cli.errors import SusxError
from susx_cli.metrics import METRIC_DESCRIPTIONS, PerClass

STR = h5py.string_dtype(encoding="utf-8")
PARTIAL_SUFFIX = ".partial"


def _write_header(f: h5py.File, kind: str, prov: dict[str, Any], classes: list[str]) -> None:
    f.attrs["kind"] = kind
    f.attrs["schema_version"] = common.SCHEMA_VERSION
    f.attrs["provenance"] = common.to_json_str(prov)
    f.attrs["complete"] = False
    f.create_dataset("classes", data=np.array(classes, dtype=object), dtype=STR)


def _open_checked(path: Path, expected_kind: str | tuple[str, ...]) -> h5py.File:
    if not path.exists():
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        hint = (
            "it was interrupted: re-run the same command to resume" if partial.exists() else "check the path"
        )
        raise SusxError(f"{path} does not exist", hint=hint)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise SusxError(f"{path} is not a readable HDF5 file", hint="pass a file written by susx") from exc
    try:
        common.check_header(path, _attr_str(f, "kind"), f.attrs.get("schema_version"), expected_kind)
        if not bool(f.attrs.get("complete", False)):
            raise SusxError(
                f"{path} is incomplete (no completion marker)", hint="re-run the stage that makes it"
            )
    except SusxError:
        f.close()
        raise
    return f


class _Damaged(Exception):
    """Raised inside a reader when a required attribute or dataset is missing or unreadable."""


@contextlib.contextmanager
def _reading(path: Path, kind: str | tuple[str, ...]):
    """Open a complete artifact of ``kind``; a missing or garbled part becomes one line naming the file."""
    f = _open_checked(path, kind)
    try:
        with f:
            yield f
    except _Damaged as exc:
        raise _damaged_error(path, f"{exc}", kind) from None
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise _damaged_error(path, f"a part cannot be read ({exc.__class__.__name__}: {exc})", kind) from None


def _damaged_error(path: Path, what: str, kind: str | tuple[str, ...]) -> SusxError:
    kinds = (kind,) if isinstance(kind, str) else kind
    makers = " or ".join(sorted({common.STAGE_OF_KIND.get(k, k) for k in kinds}))
    return SusxError(f"{path} is damaged: {what}", hint=f"re-create it with {makers}")


def _need(f: h5py.File, name: str) -> h5py.Dataset:
    """The dataset ``name``; raises _Damaged when it is missing."""
    if name not in f or not isinstance(f[name], h5py.Dataset):
        raise _Damaged(f"no '{name}' dataset")
    return f[name]


def _need_json(f: h5py.File, name: str) -> Any:
    """The JSON attribute ``name``; raises _Damaged when it is missing or not valid JSON."""
    if name not in f.attrs:
        raise _Damaged(f"no '{name}' attribute")
    try:
        value = _attr_json(f, name)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise _Damaged(f"the '{name}' attribute is not valid JSON") from None
    if value is None:
        raise _Damaged(f"the '{name}' attribute is empty")
    return value


def _need_str(f: h5py.File, name: str) -> str:
    """The string attribute ``name``; raises _Damaged when it is missing."""
    value = _attr_str(f, name)
    if value is None:
        raise _Damaged(f"no '{name}' attribute")
    return value


def _model(f: h5py.File) -> ModelIdentity:
    data = _need_json(f, "model")
    try:
        return ModelIdentity.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _Damaged("the 'model' attribute does not describe a model") from None


def _attr_str(f: h5py.File, name: str) -> str | None:
    value = f.attrs.get(name)
    if isinstance(value, bytes):
        value = value.decode()
    return value


def _attr_json(f: h5py.File, name: str) -> Any:
    value = _attr_str(f, name)
    return json.loads(value) if value else None


def _strings(ds: h5py.Dataset) -> list[str]:
    try:
        return [x.decode() if isinstance(x, bytes) else str(x) for x in ds[()]]
    except UnicodeDecodeError as exc:
        bad = exc.object[max(0, exc.start - 20) : exc.end + 20].decode("utf-8", "backslashreplace")
        raise SusxError(
            f"{ds.file.filename}: {ds.name.lstrip('/')} holds a name that is not valid UTF-8 (…{bad}…)",
            hint="the file is damaged: write it again",
        ) from None


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
    # (N, K, D) float32 unit rows: the K augmented views each row averages (``embed --keep-views``), or None
    views: np.ndarray | None = None

    @property
    def has_labels(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())


class FeatureWriter:
    """Chunked, resumable writer of an image feature file.

    Rows go to ``<path>.partial``; after every chunk the file is flushed and the counters are updated:
    ``rows_done``, ``skipped_done``, then ``items_done`` (input items consumed: every item is a row or a
    skipped image, so it is their sum). A killed run resumes from the last flushed chunk; counters torn
    by a crash between their writes (``items_done`` is not the sum) mean a restart from the first item.
    ``finish`` sets the completion marker and renames the file into place. With ``views`` = K, the file
    also holds ``views`` (N, K, D): the unit-norm view rows of each feature row, appended with it.
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
        views: int = 0,
    ):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.resumed_from = 0
        self.views = views
        self.file = self._open_or_resume(dim, items_total, classes, model, prov, chunk_rows, storage_dtype)

    def _open_or_resume(self, dim, items_total, classes, model, prov, chunk_rows, storage_dtype) -> h5py.File:
        row_bytes = dim * np.dtype(storage_dtype).itemsize * (1 + self.views)
        self._chunk_bytes = min(chunk_rows, 4096) * (row_bytes + 8 + 256)
        if self.partial.exists():
            f = None
            try:
                f = h5py.File(self.partial, "a")
                old = _attr_json(f, "provenance") or {}
                if (
                    common.same_fingerprint(old, prov)
                    and int(f.attrs["items_total"]) == items_total
                    and _counters_agree(f)
                ):
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
        f.attrs["skipped_done"] = 0
        chunk = (min(chunk_rows, 4096), dim)
        f.create_dataset("features", shape=(0, dim), maxshape=(None, dim), dtype=storage_dtype, chunks=chunk)
        f.create_dataset("labels", shape=(0,), maxshape=(None,), dtype="int64", chunks=(chunk[0],))
        f.create_dataset("keys", shape=(0,), maxshape=(None,), dtype=STR, chunks=(chunk[0],))
        if self.views:
            f.create_dataset(
                "views",
                shape=(0, self.views, dim),
                maxshape=(None, self.views, dim),
                dtype=storage_dtype,
                chunks=(max(1, chunk[0] // self.views), self.views, dim),
            )
        f.create_dataset("skipped_keys", shape=(0,), maxshape=(None,), dtype=STR, chunks=(256,))
        f.create_dataset("skipped_reasons", shape=(0,), maxshape=(None,), dtype=STR, chunks=(256,))
        f.flush()
        return f

    @staticmethod
    def _truncate_to_done(f: h5py.File) -> None:
        # Rows written after the last recorded flush belong to an unfinished chunk: drop them.
        rows = int(f.attrs["rows_done"])
        for name in _row_datasets(f):
            f[name].resize(rows, axis=0)
        skipped = int(f.attrs["skipped_done"])
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
        skipped: Sequence[tuple[str, str]] = (),
        views: np.ndarray | None = None,
    ) -> None:
        """Append one chunk of input items: (b, D) features, (b,) labels and b keys of the images read,
        (key, reason) of those skipped, and (b, K, D) views when the file keeps them."""
        if (views is None) != (not self.views):
            raise ValueError(f"this feature file keeps {self.views} views per row; got {views is not None}")
        # Check the room first: HDF5 can corrupt its file (or crash) when a write meets a full disk.
        common.ensure_free_space(self.partial, self._chunk_bytes)
        try:
            self._append(features, labels, keys, skipped, views)
        except (OSError, RuntimeError) as exc:
            raise SusxError(
                f"could not write {self.partial}: {exc.__class__.__name__}: {exc}"[:300],
                hint="free disk space or fix permissions, then re-run the same command to resume",
            ) from None

    def _append(self, features, labels, keys, skipped, views) -> None:
        f = self.file
        n0 = f["features"].shape[0]
        b = features.shape[0]
        if b and views is not None:
            f["views"].resize(n0 + b, axis=0)
            f["views"][n0:] = views.astype(f["views"].dtype, copy=False)
        if b:
            f["features"].resize(n0 + b, axis=0)
            f["features"][n0:] = features.astype(f["features"].dtype, copy=False)
            f["labels"].resize(n0 + b, axis=0)
            f["labels"][n0:] = labels
            f["keys"].resize(n0 + b, axis=0)
            f["keys"][n0:] = np.array(keys, dtype=object)
        if skipped:
            s0 = f["skipped_keys"].shape[0]
            for name, values in (
                ("skipped_keys", [s[0] for s in skipped]),
                ("skipped_reasons", [s[1] for s in skipped]),
            ):
                f[name].resize(s0 + len(skipped), axis=0)
                f[name][s0:] = np.array(values, dtype=object)
        f.flush()
        # The counters are written only after the data is flushed, so they never claim unwritten rows;
        # items_done last, so that a crash between these writes shows as counters that do not add up.
        f.attrs["rows_done"] = n0 + b
        f.attrs["skipped_done"] = f["skipped_keys"].shape[0]
        f.attrs["items_done"] = n0 + b + f["skipped_keys"].shape[0]
        f.flush()

    def finish(self, extra_attrs: dict[str, Any] | None = None) -> None:
        """Verify every row and key, then set the completion marker and move the file into place."""
        f = self.file
        rows = int(f.attrs["rows_done"])
        done, total = int(f.attrs["items_done"]), int(f.attrs["items_total"])
        if done != total or any(f[name].shape[0] != rows for name in _row_datasets(f)):
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


def _counters_agree(f: h5py.File) -> bool:
    """Whether a partial file's counters were all written by the same chunk (items = rows + skipped)."""
    return int(f.attrs["items_done"]) == int(f.attrs["rows_done"]) + int(f.attrs["skipped_done"])


def _rows_verified(f: h5py.File, rows: int, chunk: int = 65536) -> bool:
    """Whether the first ``rows`` rows read back whole: a non-empty key and a unit-length feature row
    each, and unit-length view rows where the file keeps them (a row the disk never received reads as zeros
    and an empty key)."""
    if any(f[name].shape[0] < rows for name in _row_datasets(f)):
        return False
    for start in range(0, rows, chunk):
        for name in ("features", "views") if "views" in f else ("features",):
            block = np.asarray(f[name][start : start + chunk], dtype=np.float64)
            if not np.all(np.abs(np.linalg.norm(block, axis=-1) - 1.0) <= 1e-2):
                return False
        if not all(len(k) for k in f["keys"][start : start + chunk]):
            return False
    return True


def _row_datasets(f: h5py.File) -> tuple[str, ...]:
    """The datasets with one entry per feature row: features, labels, keys, and views where kept."""
    return (*_ROW_DATASETS, "views") if "views" in f else _ROW_DATASETS


def read_features(path: str | Path) -> FeatureSet:
    """Every row of a complete feature file; ``views`` (N, K, D) too where the file keeps them."""
    path = Path(path)
    with _reading(path, common.IMAGE_FEATURES) as f:
        features = _need(f, "features")[()].astype(np.float32)
        views = f["views"][()].astype(np.float32) if "views" in f else None
        if views is not None and views.shape[0] != features.shape[0]:
            raise _Damaged(f"views has {views.shape[0]} rows, features {features.shape[0]}")
        labels = _need(f, "labels")[()].astype(np.int64)
        keys = _strings(_need(f, "keys"))
        classes = _strings(_need(f, "classes"))
        skipped = [
            {"key": k, "reason": r}
            for k, r in zip(
                _strings(_need(f, "skipped_keys")), _strings(_need(f, "skipped_reasons")), strict=True
            )
        ]
        return FeatureSet(
            features=features,
            labels=labels,
            keys=keys,
            classes=classes,
            model=_model(f),
            provenance=_need_json(f, "provenance"),
            skipped=skipped,
            path=path,
            views=views,
        )


def read_feature_model(path: str | Path) -> ModelIdentity:
    """The model identity of a complete image feature file, without reading its rows."""
    with _reading(Path(path), common.IMAGE_FEATURES) as f:
        return _model(f)


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
    """Provenance of the HDF5 output at ``path`` (None if absent), for ``common.decide_existing``.

    A file of susx's that is incomplete, damaged or of another schema version gives a
    ``common.replaceable`` provenance (--overwrite replaces it), and so does a file of another susx kind
    (``outputs``' rule); one that is not recognisably susx's is refused without suggesting --overwrite.
    """
    if not path.exists():
        return None
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise common.foreign_output(path) from None
    with f:
        found = _attr_str(f, "kind")
        if not (isinstance(found, str) and found.startswith("susx.")):
            raise common.foreign_output(path)
        if found != kind:  # another output of susx's: replaced only with --overwrite
            return common.replaceable(f"a {found} file, not {kind}")
        problem = common.schema_problem(f.attrs.get("schema_version"))
        if problem:
            return common.replaceable(problem)
        if not bool(f.attrs.get("complete", False)):
            return common.replaceable("incomplete (no completion marker)")
        try:
            _check_parts(f, kind)
            return _need_json(f, "provenance")
        except (_Damaged, KeyError, TypeError, ValueError, OSError) as exc:
            return common.replaceable(f"damaged ({exc})")


# What a complete file of each kind holds: JSON attributes, datasets. Checked without reading rows, so a
# damaged output is never taken as up to date.
_PARTS = {
    common.IMAGE_FEATURES: (("model", "provenance"), ("features", "labels", "keys", "classes")),
    common.TEXT_CLASSIFIER: (("model", "provenance"), ("weights", "num_texts", "classes")),
    common.PREDICTIONS: (
        ("metrics", "provenance"),
        ("predicted", "top5", "top5_scores", "labels", "keys", "classes"),
    ),
}


def _check_parts(f: h5py.File, kind: str) -> None:
    """Raise _Damaged when a required attribute or dataset of ``kind`` is missing or garbled."""
    attrs, datasets = _PARTS.get(kind, ((), ()))
    for name in attrs:
        _need_json(f, name)
    for name in datasets:
        _need(f, name)


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
    with _reading(path, common.TEXT_CLASSIFIER) as f:
        return TextClassifier(
            weights=_need(f, "weights")[()].astype(np.float32),
            num_texts=_need(f, "num_texts")[()].astype(np.int64),
            classes=_strings(_need(f, "classes")),
            model=_model(f),
            pool=_need_str(f, "pool"),
            provenance=_need_json(f, "provenance"),
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
    per_class: PerClass | None = None  # labelled queries only; None in files written before it existed
    # Online (test-time) methods: the stream, position -> query row (a permutation of 0..n-1), and the seed
    # that drew it (None: the file order, a diagnostic). The rows above stay in file order.
    order: np.ndarray | None = None
    order_seed: int | None = None


# Per-class datasets (optional: older files and unlabelled queries have none). Recall in percent, NaN for
# a class without queries; the confusion matrix for C <= metrics.CONFUSION_MATRIX_MAX_CLASSES, else the
# top confusions (each class's most frequent wrong predictions, -1 / 0 padded).
_PER_CLASS = {
    "recall": "per_class_recall",
    "queries": "query_count",
    "support": "support_count",
    "confusion": "confusion",
    "top_confused": "top_confusions",
    "top_counts": "top_confusion_counts",
}


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
            if p.per_class is not None:
                _write_per_class(f, p.per_class)
            if p.order is not None:
                order = f.create_dataset("order", data=p.order.astype(np.int64))
                order.attrs["seed"] = -1 if p.order_seed is None else int(p.order_seed)
            f.attrs["complete"] = True


def _write_per_class(f: h5py.File, pc: PerClass) -> None:
    f.attrs["metric_descriptions"] = common.to_json_str(METRIC_DESCRIPTIONS)
    for field_name, name in _PER_CLASS.items():
        value = getattr(pc, field_name)
        if value is not None:
            f.create_dataset(name, data=value.astype(np.float64 if field_name == "recall" else np.int64))


def _read_per_class(f: h5py.File) -> PerClass | None:
    if _PER_CLASS["recall"] not in f:
        return None
    found = {field_name: f[name][()] for field_name, name in _PER_CLASS.items() if name in f}
    if "queries" not in found or ("confusion" not in found and "top_confused" not in found):
        raise _Damaged("per-class datasets are incomplete")
    return PerClass(**found)


def read_predictions(path: str | Path) -> Predictions:
    path = Path(path)
    with _reading(path, common.PREDICTIONS) as f:
        preds = Predictions(
            predicted=_need(f, "predicted")[()],
            top5=_need(f, "top5")[()],
            scores=_need(f, "top5_scores")[()],
            labels=_need(f, "labels")[()],
            keys=_strings(_need(f, "keys")),
            classes=_strings(_need(f, "classes")),
            method=_need_str(f, "method"),
            metrics=_need_json(f, "metrics"),
            provenance=_need_json(f, "provenance"),
            path=path,
            per_class=_read_per_class(f),
        )
        if "order" in f:
            preds.order = f["order"][()]
            seed = int(f["order"].attrs.get("seed", -1))
            preds.order_seed = None if seed < 0 else seed
    _check_predictions(preds, path)
    return preds


def _check_predictions(preds: Predictions, path: Path) -> None:
    """Refuse a predictions file whose rows disagree in length, whose class indices fall outside its
    class list (predicted and top-k in 0..C-1, labels in -1..C-1) or whose scores are not finite."""
    n, c = len(preds.keys), len(preds.classes)
    problem = None
    if preds.predicted.shape != (n,) or preds.labels.shape != (n,) or preds.top5.shape != preds.scores.shape:
        problem = "its datasets disagree in length"
    elif preds.top5.ndim != 2 or preds.top5.shape[0] != n or preds.top5.shape[1] > c:
        problem = f"its top-k table has shape {tuple(preds.top5.shape)} for {n} queries and {c} classes"
    else:
        top_confused = preds.per_class.top_confused if preds.per_class is not None else None
        for name, values, low in (
            ("predicted", preds.predicted, 0),
            ("top5", preds.top5, 0),
            ("labels", preds.labels, -1),
            ("top_confusions", np.zeros(0, np.int64) if top_confused is None else top_confused, -1),
        ):
            if not np.issubdtype(values.dtype, np.integer):
                problem = f"its {name} are {values.dtype}, not class indices"
            elif values.size and (values.min() < low or values.max() >= c):
                bad = values[(values < low) | (values >= c)].flat[0]
                problem = f"its {name} hold class index {int(bad)}, outside {low}..{c - 1}"
            if problem:
                break
        else:
            if not np.isfinite(preds.scores).all():
                problem = "its top-k scores hold NaN or infinite values"
            elif preds.order is not None and not _is_permutation(preds.order, n):
                problem = f"its stream order is not a permutation of its {n} query rows"
    if problem:
        raise SusxError(f"{path}: {problem}", hint="the file is damaged: run `susx predict` again")


def _is_permutation(order: np.ndarray, n: int) -> bool:
    return (
        order.shape == (n,)
        and np.issubdtype(order.dtype, np.integer)
        and np.array_equal(np.sort(order), np.arange(n))
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
        for attr in ("model", "provenance", "metrics", "metric_descriptions"):
            if attr in f.attrs:
                out[attr] = _attr_json(f, attr)
        for attr in (
            "pool",
            "method",
            "normalized",
            "dtype",
            "items_done",
            "items_total",
            "augment_passes",
            "augment_seed",
        ):
            if attr in f.attrs:
                value = f.attrs[attr]
                out[attr] = (
                    value.item()
                    if hasattr(value, "item")
                    else (value.decode() if isinstance(value, bytes) else value)
                )
        if "skipped_keys" in f:
            out["skipped"] = int(f["skipped_keys"].shape[0])
        return out


# ----------------------------------------------------------------------------------------- feature parts

_ROW_DATASETS = ("features", "labels", "keys")
_SKIP_DATASETS = ("skipped_keys", "skipped_reasons")


@dataclass
class FeatureHeader:
    """What a complete image feature file says about itself, without its rows."""

    provenance: dict[str, Any]
    model: dict[str, Any]
    classes: list[str]
    rows: int
    skipped: int
    items: int


def read_feature_header(path: str | Path) -> FeatureHeader:
    """The header of a complete image feature file (refuses an incomplete or foreign one)."""
    path = Path(path)
    with _open_checked(path, common.IMAGE_FEATURES) as f:
        return FeatureHeader(
            provenance=_attr_json(f, "provenance") or {},
            model=_attr_json(f, "model") or {},
            classes=_strings(f["classes"]),
            rows=int(f["features"].shape[0]),
            skipped=int(f["skipped_keys"].shape[0]),
            items=int(f.attrs.get("items_total", 0)),
        )


def _copy_rows(src: h5py.Dataset, dst: h5py.Dataset, offset: int, chunk_rows: int) -> None:
    # Slice by slice, so memory stays at one chunk however large the part is.
    for start in range(0, src.shape[0], chunk_rows):
        block = src[start : start + chunk_rows]
        dst[offset + start : offset + start + block.shape[0]] = block


def join_feature_parts(
    parts: list[Path], output: Path, prov: dict[str, Any], chunk_rows: int = 16384
) -> None:
    """Concatenate complete feature part files, in order, into one feature file at ``output``.

    A copy, not an HDF5 virtual dataset: the result stands alone (plain h5py, rsync, removing the parts).
    Datasets keep the layout of the first part; attributes are those a single writer of all the items
    leaves, with ``prov`` as the provenance. Written beside ``output`` and renamed into place when complete.
    """
    headers = [read_feature_header(p) for p in parts]
    rows, skipped = sum(h.rows for h in headers), sum(h.skipped for h in headers)
    with common.atomic_path(output, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as out, h5py.File(parts[0], "r") as first:
            _write_header(out, common.IMAGE_FEATURES, prov, headers[0].classes)
            for attr in ("model", "normalized", "dtype"):
                out.attrs[attr] = first.attrs[attr]
            for attr in ("augment_passes", "augment_seed"):  # absent in files written before augmentation
                if attr in first.attrs:
                    out.attrs[attr] = first.attrs[attr]
            out.attrs["items_total"] = out.attrs["items_done"] = sum(h.items for h in headers)
            out.attrs["rows_done"], out.attrs["skipped_done"] = rows, skipped
            row_datasets = _row_datasets(first)
            for name in (*row_datasets, *_SKIP_DATASETS):
                src = first[name]
                total = rows if name in row_datasets else skipped
                out.create_dataset(
                    name,
                    shape=(total, *src.shape[1:]),
                    maxshape=src.maxshape,
                    dtype=src.dtype,
                    chunks=src.chunks,
                )
            row0 = skip0 = 0
            for part, header in zip(parts, headers, strict=True):
                with h5py.File(part, "r") as src:
                    for name in row_datasets:
                        _copy_rows(src[name], out[name], row0, chunk_rows)
                    for name in _SKIP_DATASETS:
                        _copy_rows(src[name], out[name], skip0, chunk_rows)
                row0, skip0 = row0 + header.rows, skip0 + header.skipped
            out.flush()
            out.attrs["complete"] = True
