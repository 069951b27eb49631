"""The one place that decides whether the method's artifacts fit together.

`load_method_inputs` reads a text classifier and any of support features, query features and a
calibration, and checks in one pass: model identity, class lists, shapes, label ranges, key counts,
finiteness and norms, and which support set a calibration was made on. `calibrate`, `predict` and
`eval` read their inputs only through it; every inconsistency is a one-line SusxError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from susx_cli.artifacts import calibration as cal_io
from susx_cli.artifacts import common, hdf5
from susx_cli.artifacts.schema import ModelIdentity, check_same_model
from susx_cli.classnames import check_same_classes
from susx_cli.errors import SusxError

NORM_TOLERANCE = 1e-2  # stored features may be float16: allow its rounding


def as_float64(x: np.ndarray, device: str):
    """A float64 tensor on ``device``: the method's precision (docs/METHOD.md: float32 or better)."""
    import torch

    return torch.from_numpy(x).to(device, torch.float64)


def support_tensors(sup: hdf5.FeatureSet, device: str):
    """The method's ``Support`` of a support feature file: features (N, D) and, where the file keeps them,
    views (N, K, D) as float64 on ``device``; labels (N,) int64."""
    import torch

    from susx_cli.method.registry import Support

    views = None if sup.views is None else as_float64(sup.views, device)
    return Support(as_float64(sup.features, device), torch.from_numpy(sup.labels).to(device), views)


def check_features(x: np.ndarray, what: str) -> None:
    """Refuse empty, non-finite or non-normalised rows."""
    if x.shape[0] == 0:
        raise SusxError(f"{what} holds no rows", hint="embed at least one image")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x).all(1)).sum())
        raise SusxError(f"{what} has {bad} row(s) with NaN or infinite values", hint="re-embed the images")
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    off = np.abs(norms - 1.0) > NORM_TOLERANCE
    if off.any():
        raise SusxError(
            f"{what} has {int(off.sum())} row(s) that are not L2-normalised (norm {norms[off][0]:.3f})",
            hint="features must come from `susx embed`, or be normalised to unit length",
        )


@dataclass
class MethodInputs:
    """Artifacts that fit together: one model, one class list of C classes, rows L2-normalised.

    text.weights (C, D); support.features (N, D) with labels in 0..C-1 and every class present;
    query.features (n, D) with labels in 0..C-1, or -1 where unknown. ``ids`` holds the
    ``common.identity`` (path, kind, sha256) of every file read, by role, for provenance.
    """

    text: hdf5.TextClassifier
    support: hdf5.FeatureSet | None = None
    query: hdf5.FeatureSet | None = None
    calibration: cal_io.Calibration | None = None
    ids: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_method_inputs(
    text_path: Path,
    support_path: Path | None = None,
    query_path: Path | None = None,
    calibration_path: Path | None = None,
    *,
    query_labels: bool = False,
    query_what: str = "query set",
) -> MethodInputs:
    """Read and cross-check the given artifacts; ``query_labels`` requires every query to be labelled."""
    ids = {"text": common.identity(text_path, common.TEXT_CLASSIFIER)}
    text = hdf5.read_text_classifier(text_path)
    _check_text(text, str(text_path))
    support = query = cal = None
    if support_path is not None:
        ids["support"] = common.identity(support_path, common.IMAGE_FEATURES)
        support = hdf5.read_features(support_path)
        _check_support(support, text, str(text_path), str(support_path))
    if calibration_path is not None:
        ids["calibration"] = common.identity(calibration_path, common.CALIBRATION)
        cal = cal_io.read_calibration(calibration_path)
        _check_calibration(cal, text, str(text_path), str(calibration_path))
        if support_path is not None:
            _check_calibrated_on(cal, ids["support"], str(calibration_path), str(support_path))
    if query_path is not None:
        ids["query"] = common.identity(query_path, common.IMAGE_FEATURES)
        query = hdf5.read_features(query_path)
        _check_queries(query, text, str(query_path), query_labels, query_what)
    return MethodInputs(text, support, query, cal, ids)


def _check_text(text: hdf5.TextClassifier, what: str) -> None:
    rows, classes = text.weights.shape[0], len(text.classes)
    if text.weights.ndim != 2 or rows != classes:
        raise SusxError(
            f"{what} has {rows} classifier row(s) for {classes} classes",
            hint="the file is damaged: embed the prompts again",
        )
    check_features(text.weights, what)


def _check_rows(fs: hdf5.FeatureSet, text: hdf5.TextClassifier, text_what: str, what: str) -> None:
    """What support and query features share: model, classes, shapes, key counts, finite unit rows."""
    check_same_model(text.model, fs.model, text_what, what)
    if fs.classes:
        check_same_classes(text.classes, fs.classes, text_what, what)
    n = fs.features.shape[0]
    if fs.features.ndim != 2 or (n and fs.features.shape[1] != text.weights.shape[1]):
        raise SusxError(
            f"{what} has features of shape {tuple(fs.features.shape)}, the text classifier's dim is "
            f"{text.weights.shape[1]}",
            hint="the file is damaged: embed the images again",
        )
    if len(fs.keys) != n or fs.labels.shape != (n,):
        raise SusxError(
            f"{what} has {n} feature rows but {len(fs.keys)} keys and {fs.labels.shape[0]} labels",
            hint="the file is damaged: embed the images again",
        )
    check_features(fs.features, what)
    num_classes = len(text.classes)
    bad = (fs.labels < -1) | (fs.labels >= num_classes)
    if bad.any():
        raise SusxError(
            f"{what} has {int(bad.sum())} label(s) outside 0..{num_classes - 1} "
            f"(e.g. {int(fs.labels[bad][0])}) for {num_classes} classes",
            hint="the file is damaged or from another class list: embed the images again",
        )


def _check_support(sup: hdf5.FeatureSet, text: hdf5.TextClassifier, text_what: str, what: str) -> None:
    _check_rows(sup, text, text_what, what)
    if sup.views is not None:
        n, d = sup.features.shape
        if sup.views.ndim != 3 or sup.views.shape[0] != n or sup.views.shape[2] != d:
            raise SusxError(
                f"{what} has views of shape {tuple(sup.views.shape)} for {n} rows of dimension {d}",
                hint="the file is damaged: embed the images again",
            )
        check_features(sup.views.reshape(-1, d), f"{what} (views)")
    if (sup.labels < 0).any():
        raise SusxError(f"{what} has images without labels", hint="embed a support set or labelled folders")
    counts = np.bincount(sup.labels, minlength=len(text.classes))
    empty = [text.classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        shown = ", ".join(repr(e) for e in empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise SusxError(
            f"{what}: {len(empty)} class(es) have no support images: {shown}",
            hint="curate images for them (e.g. a larger --per-class) and embed again",
        )


def _check_queries(
    q: hdf5.FeatureSet, text: hdf5.TextClassifier, what: str, need_labels: bool, role: str
) -> None:
    _check_rows(q, text, "the text classifier", what)
    if need_labels and not q.has_labels:
        raise SusxError(
            f"{role} {what} has images without labels", hint="embed a labelled split or class folders"
        )


def _check_calibration(cal: cal_io.Calibration, text: hdf5.TextClassifier, text_what: str, what: str) -> None:
    """The calibration's method is registered, its values are that method's and pass the same checks as
    the command line's; it was made for these classes and this model."""
    from susx_cli.method import registry

    spec = registry.get(cal.method)
    if cal.mode not in spec.modes:
        raise SusxError(
            f"{what} records mode {cal.mode!r}, which {spec.name} does not have",
            hint="re-create it with susx calibrate",
        )
    cal.hyperparameters = spec.check_values(cal.hyperparameters, what)
    unknown = sorted(set(cal.settings) - set(spec.settings))
    if unknown:
        raise SusxError(
            f"{what} records settings {', '.join(unknown)} that {spec.name} does not read",
            hint="re-create it with susx calibrate",
        )
    check_same_classes(text.classes, cal.classes, text_what, what)
    model = ModelIdentity.from_dict(cal.model)
    if model.key() != text.model.key():
        raise SusxError(
            f"{what} was made for {model.describe()}, the text classifier is {text.model.describe()}",
            hint="calibrate again with this model's features",
        )


def _check_calibrated_on(
    cal: cal_io.Calibration, support_id: dict[str, Any], what: str, support_what: str
) -> None:
    """Refuse a calibration chosen on another support set: its hyperparameters belong to that set."""
    made_on = cal_io.support_input(cal)
    if made_on is None or made_on.get("sha256") in (None, support_id["sha256"]):
        return
    raise SusxError(
        f"{what} was calibrated on another support set ({made_on.get('path')}), not on {support_what}",
        hint="pass the support features it was made on, or calibrate again with these",
    )
