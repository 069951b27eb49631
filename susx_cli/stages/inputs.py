"""Loading the method's inputs with every consistency check calibrate and predict need."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from susx_cli.artifacts import hdf5
from susx_cli.classnames import check_same_classes
from susx_cli.errors import SusxError

NORM_TOLERANCE = 1e-2  # stored features may be float16: allow its rounding


def as_float64(x: np.ndarray, device: str):
    """A float64 tensor on ``device``: the method's precision (METHOD.md: float32 or better)."""
    import torch

    return torch.from_numpy(x).to(device, torch.float64)


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
    text: hdf5.TextClassifier
    support: hdf5.FeatureSet | None


def load_text_and_support(text_path: Path, support_path: Path | None) -> MethodInputs:
    text = hdf5.read_text_classifier(text_path)
    check_features(text.weights, str(text_path))
    if support_path is None:
        return MethodInputs(text, None)
    sup = hdf5.read_features(support_path)
    hdf5.check_same_model(text.model, sup.model, str(text_path), str(support_path))
    check_same_classes(text.classes, sup.classes, str(text_path), str(support_path))
    check_features(sup.features, str(support_path))
    if (sup.labels < 0).any():
        raise SusxError(f"{support_path} has images without labels", hint="embed a support set or labelled folders")
    counts = np.bincount(sup.labels, minlength=len(sup.classes))
    empty = [sup.classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        shown = ", ".join(repr(e) for e in empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise SusxError(
            f"{support_path}: {len(empty)} class(es) have no support images: {shown}",
            hint="curate images for them (e.g. a larger --per-class) and embed again",
        )
    return MethodInputs(text, sup)


def load_queries(path: Path, text: hdf5.TextClassifier, need_labels: bool, what: str) -> hdf5.FeatureSet:
    q = hdf5.read_features(path)
    hdf5.check_same_model(text.model, q.model, "the text classifier", str(path))
    if q.classes:
        check_same_classes(text.classes, q.classes, "the text classifier", str(path))
    check_features(q.features, str(path))
    if need_labels and not q.has_labels:
        raise SusxError(f"{what} {path} has images without labels", hint="embed a labelled split or class folders")
    return q
