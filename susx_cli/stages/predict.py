"""`predict`: classify query features (or images, embedded on the fly) with zero-shot, Tip-Adapter, TIP-X or
GDA (whose head is re-fitted, deterministically, from the support features the calibration names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from susx_cli import runtime
from susx_cli.artifacts import common, hdf5
from susx_cli.artifacts import outputs as output_paths
from susx_cli.errors import SusxError
from susx_cli.method import METHODS, uses_gamma, uses_support
from susx_cli.metrics import (
    PerClass,
    calibration_metrics,
    classification_metrics,
    per_class_results,
    topk_indices,
)
from susx_cli.progress import info, warn
from susx_cli.stages.inputs import as_float64, load_method_inputs
from susx_cli.stages.results import StageResult


@dataclass
class PredictResult(StageResult):
    """``metrics``: top-k accuracies, mean per-class recall, ECE, NLL and n (empty without labels);
    ``worst_classes``: up to 10 classes with the lowest recall (see ``worst_classes``)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    worst_classes: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "metrics": self.metrics, "worst_classes": self.worst_classes}


def predict(
    text_path: Path,
    query_path: Path,
    output: Path,
    *,
    support_path: Path | None = None,
    calibration_path: Path | None = None,
    method: str | None = None,
    embed_options: dict[str, Any] | None = None,
    device: str = "auto",
    overwrite: bool = False,
) -> PredictResult:
    import torch

    from susx_cli.method import tipx

    dev = runtime.method_device(device)  # a bad --device fails before any reading
    if method is not None and method not in METHODS:
        raise SusxError(f"unknown method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    # A calibration names a method with support; without one (and without --method) it is zero-shot.
    with_support = uses_support(method) if method is not None else calibration_path is not None
    if with_support and (support_path is None or calibration_path is None):
        raise SusxError(
            f"--method {method or 'tip-x'} needs --support FEATURES.h5 and --calibration FILE",
            hint="or use --method zero-shot",
        )
    output_paths.check_paths(
        [text_path, query_path, support_path, calibration_path], [("-o/--output", output)]
    )
    query_features = _query_features(query_path, output, text_path, embed_options, overwrite)
    inputs = load_method_inputs(
        text_path, support_path if with_support else None, query_features, calibration_path
    )
    text, q, cal = inputs.text, inputs.query, inputs.calibration
    method = method or (cal.method if cal else "zero-shot")
    if cal is not None and with_support:
        _warn_if_tuned_on_queries(cal, inputs.ids["query"], calibration_path)
    if with_support and cal.method != method:
        _check_method_match(cal.method, method, str(calibration_path))

    # The query is identified by its features' content hash (an input below), not by how its path was typed.
    options = {"method": method}
    ids = [inputs.ids["text"], inputs.ids["query"]]
    if with_support:
        ids += [inputs.ids["support"], inputs.ids["calibration"]]
    prov = common.provenance(options, ids)
    if common.decide_existing(output, hdf5.existing_provenance(output, common.PREDICTIONS), prov, overwrite):
        info(f"{output} is up to date (same inputs and options); nothing to do")
        existing = hdf5.read_predictions(output)
        metrics = summary_metrics(existing.metrics)
        return PredictResult(
            "predict",
            [output],
            skipped=True,
            summary=_predict_summary(existing),
            metrics=metrics if "n" in metrics else {},
            worst_classes=worst_classes(existing.per_class, existing.classes),
        )

    as_t = lambda x: as_float64(x, dev)  # noqa: E731
    kwargs: dict[str, Any] = {}
    scale = cal.logit_scale if cal else 100.0
    bias = cal.logit_bias if cal else 0.0
    if with_support and method == "gda":
        logits = _gda_logits(inputs, as_t, dev, cal.alpha, scale, bias)
    elif with_support:
        sup = inputs.support
        kwargs = dict(
            F=as_t(sup.features),
            y=torch.from_numpy(sup.labels).to(dev),
            alpha=cal.alpha,
            beta=cal.beta,
            gamma=cal.gamma if uses_gamma(method) else 0.0,
            tau=cal.tau,
            normalize=cal.normalize_per_class,
        )
    if not (with_support and method == "gda"):
        logits = tipx.logits(
            method, as_t(q.features), as_t(text.weights), logit_scale=scale, logit_bias=bias, **kwargs
        )
    logits = logits.cpu().numpy()
    top = topk_indices(logits, 5)
    scores = np.take_along_axis(logits, top, axis=1)
    metrics, per_class = {}, None
    if q.has_labels:
        metrics = {
            **classification_metrics(top, q.labels, len(text.classes)),
            **calibration_metrics(logits, q.labels),
        }
        per_class = per_class_results(
            top[:, 0], q.labels, len(text.classes), inputs.support.labels if with_support else None
        )
    if not q.has_labels and (q.labels >= 0).any():
        warn("some queries have labels and some do not: no metrics computed")
    preds = hdf5.Predictions(
        predicted=top[:, 0],
        top5=top,
        scores=scores,
        labels=q.labels,
        keys=q.keys,
        classes=text.classes,
        method=method,
        metrics={
            **metrics,
            "method": method,
            "logit_scale": scale,
            **({"logit_bias": bias} if bias else {}),
            "hyperparameters": None if cal is None or method == "zero-shot" else _used(cal, method, kwargs),
        },
        provenance=prov,
        per_class=per_class,
    )
    hdf5.write_predictions(output, preds)
    outputs = [output] + ([query_features] if query_features != query_path else [])
    return PredictResult(
        "predict",
        outputs,
        summary=_predict_summary(preds),
        metrics=summary_metrics(metrics),
        worst_classes=worst_classes(per_class, text.classes),
    )


def _predict_summary(preds: hdf5.Predictions) -> dict[str, Any]:
    """The `predict` summary, the same keys whether the predictions were just written or read back."""
    return {"method": preds.method, "queries": len(preds.keys)}


def summary_metrics(recorded: dict[str, Any]) -> dict[str, Any]:
    """The figures predict prints, in order, from a predictions file's metrics: top-k accuracies (k = 1 and
    min(5, C)), mean per-class recall, ECE, NLL (older files lack these two) and n."""
    names = [k for k in recorded if k.startswith("top") and k[3:].isdigit()]
    return {k: recorded[k] for k in (*names, "mean_per_class_recall", "ece", "nll", "n") if k in recorded}


def worst_classes(per_class: PerClass | None, classes: list[str], limit: int = 10) -> list[dict[str, Any]]:
    """Up to ``limit`` classes with the lowest recall: index, name, recall (%), queries, support images (or
    None) and the class it is most often mistaken for (name and count, or None)."""
    if per_class is None:
        return []
    confused, counts = per_class.confusions(1)
    rows = []
    for c in per_class.worst(limit):
        other = int(confused[c, 0])
        rows.append(
            {
                "class": c,
                "name": classes[c],
                "recall": float(per_class.recall[c]),
                "queries": int(per_class.queries[c]),
                "support": None if per_class.support is None else int(per_class.support[c]),
                "confused_with": None if other < 0 else {"name": classes[other], "count": int(counts[c, 0])},
            }
        )
    return rows


def _warn_if_tuned_on_queries(cal, query_id: dict[str, Any], calibration_path: Path) -> None:
    """Guard rail: a calibration searched (``--mode val``) on these very query features makes the accuracy
    below a figure tuned on its own test set. The calibration records its inputs' sha256; compare them."""
    from susx_cli.artifacts.calibration import support_input

    support = support_input(cal)
    searched_on = {
        i.get("sha256")
        for i in cal.provenance.get("inputs") or []
        if isinstance(i, dict) and i.get("kind") == common.IMAGE_FEATURES and i is not support
    }
    if query_id.get("sha256") in searched_on - {None}:
        warn(
            f"{calibration_path} was calibrated on these query features ({query_id['path']}): the accuracy is tuned "
            "on its own test set, not a held-out estimate (calibrate on another labelled split, or --mode loo/kfold)"
        )


def _check_method_match(made_for: str, method: str, what: str) -> None:
    """Tip-Adapter and TIP-X share alpha and beta (a warning); GDA's alpha means something else (an error)."""
    if "gda" in (made_for, method):
        raise SusxError(
            f"{what} was made for {made_for}, not {method}: their hyperparameters mean different things",
            hint=f"calibrate with --method {method}, or predict with --method {made_for}",
        )
    warn(f"calibration was made for {made_for}; using its alpha and beta for {method}")


def _gda_logits(inputs, as_t, dev: str, alpha: float, scale: float, bias: float):
    """GDA's logits (n, C) float64: the head re-fitted from the support features (deterministic, float64)."""
    import torch

    from susx_cli.method import gda

    sup, text = inputs.support, inputs.text
    head = gda.fit_gda(as_t(sup.features), torch.from_numpy(sup.labels).to(dev), len(text.classes))
    return gda.gda_logits(as_t(inputs.query.features), as_t(text.weights), head, alpha, scale, bias)


def _used(cal, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters predict used: GDA's alpha, or alpha, beta, gamma (0 for Tip-Adapter) and tau."""
    if method == "gda":
        return {"alpha": cal.alpha}
    return {"alpha": cal.alpha, "beta": cal.beta, "gamma": kwargs.get("gamma"), "tau": cal.tau}


def _query_features(
    query_path: Path, output: Path, text_path: Path, embed_options: dict | None, overwrite: bool
) -> Path:
    """Query features: the given HDF5 file, or images embedded on the fly beside the output."""
    if query_path.is_file() and hdf5.read_kind(query_path) is not None:
        return query_path
    from susx_cli.stages.embed import embed_images

    text = hdf5.read_text_classifier(text_path)
    opts = dict(embed_options or {})
    target = output.with_name(output.stem + ".query.h5")
    info(f"embedding query images {query_path} into {target}")
    embed_images(
        query_path,
        target,
        model=text.model.arch,
        pretrained=text.model.pretrained,
        class_names=text.classes,
        overwrite=overwrite,
        **opts,
    )
    return target
