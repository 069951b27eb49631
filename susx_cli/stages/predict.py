"""`predict`: classify query features (or images, embedded on the fly) with any registered method
(method/registry.py): its state is fitted from the text classifier, the support features and the
calibration's hyperparameters (deterministically, in float64), then its logits are taken."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from susx_cli import runtime
from susx_cli.artifacts import common, hdf5
from susx_cli.errors import SusxError
from susx_cli.method import registry
from susx_cli.metrics import (
    PerClass,
    calibration_metrics,
    classification_metrics,
    per_class_results,
    topk_indices,
)
from susx_cli.progress import info, warn
from susx_cli.stages.inputs import as_float64, load_method_inputs
from susx_cli.stages.options import PredictOptions
from susx_cli.stages.results import StageResult


@dataclass
class PredictResult(StageResult):
    """``metrics``: top-k accuracies, mean per-class recall, ECE, NLL and n (empty without labels);
    ``worst_classes``: up to 10 classes with the lowest recall (see ``worst_classes``)."""

    stage: str = field(default="predict", init=False)
    metrics: dict[str, Any] = field(default_factory=dict)
    worst_classes: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "metrics": self.metrics, "worst_classes": self.worst_classes}


def predict(options: PredictOptions) -> PredictResult:
    """`susx predict`: the files ``options`` name; images given as the query are embedded first."""
    embed_options = {
        "split": options.split,
        "image_root": options.image_root,
        "unlabelled": options.unlabelled,
        "batch_size": options.batch_size,
        "device": options.device,
    }
    return predict_files(
        options.text,
        options.query,
        options.output,
        support_path=options.support,
        calibration_path=options.calibration,
        method=options.method,
        embed_options=embed_options,
        device=options.device,
        overwrite=options.overwrite,
    )


def predict_files(
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

    dev = runtime.method_device(device)  # a bad --device fails before any reading
    # A calibration names its method; without one (and without --method) it is the default, zero-shot.
    spec = registry.get(method) if method is not None else None
    if spec is None and calibration_path is None:
        spec = registry.get(registry.DEFAULT_METHOD)
    needs_support = spec is None or spec.needs_support
    missing = [
        flag
        for flag, needed, given in (
            ("--support FEATURES.h5", needs_support, support_path),
            ("--calibration FILE", spec is None or spec.calibrated, calibration_path),
        )
        if needed and given is None
    ]
    if missing:
        raise SusxError(f"--method {method} needs {' and '.join(missing)}", hint="or use --method zero-shot")
    query_features = _query_features(query_path, output, text_path, embed_options, overwrite)
    inputs = load_method_inputs(
        text_path, support_path if needs_support else None, query_features, calibration_path
    )
    text, q, cal = inputs.text, inputs.query, inputs.calibration
    spec = spec or registry.get(cal.method)
    method = spec.name
    values = _values_for(spec, cal, str(calibration_path)) if spec.calibrated else spec.defaults()
    if cal is not None and spec.needs_support:
        _warn_if_tuned_on_queries(cal, inputs.ids["query"], calibration_path)

    # The query is identified by its features' content hash (an input below), not by how its path was typed.
    options = {"method": method}
    ids = [inputs.ids["text"], inputs.ids["query"]]
    ids += [inputs.ids[k] for k in ("support", "calibration") if k in inputs.ids]
    prov = common.provenance(options, ids)
    if common.decide_existing(output, hdf5.existing_provenance(output, common.PREDICTIONS), prov, overwrite):
        info(f"{output} is up to date (same inputs and options); nothing to do")
        existing = hdf5.read_predictions(output)
        metrics = summary_metrics(existing.metrics)
        return PredictResult(
            [output],
            skipped=True,
            summary=_predict_summary(existing),
            metrics=metrics if "n" in metrics else {},
            worst_classes=worst_classes(existing.per_class, existing.classes),
        )

    scale = cal.logit_scale if cal else 100.0
    bias = cal.logit_bias if cal else 0.0
    settings = {k: v for k, v in (cal.settings if cal else {}).items() if k in spec.settings}
    support = None
    if spec.needs_support:
        sup = inputs.support
        support = registry.Support(as_float64(sup.features, dev), torch.from_numpy(sup.labels).to(dev))
    state = spec.fit(
        as_float64(text.weights, dev), support, values, logit_scale=scale, logit_bias=bias, **settings
    )
    logits = spec.logits(state, as_float64(q.features, dev))
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
            top[:, 0], q.labels, len(text.classes), inputs.support.labels if support is not None else None
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
            "hyperparameters": {**values, **settings} if values or settings else None,
        },
        provenance=prov,
        per_class=per_class,
    )
    hdf5.write_predictions(output, preds)
    outputs = [output] + ([query_features] if query_features != query_path else [])
    return PredictResult(
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


def _values_for(spec, cal, what: str) -> dict[str, float]:
    """The hyperparameters ``spec`` takes from a calibration: its own, or those of another method that
    declares the same flags (Tip-Adapter's alpha and beta in a TIP-X calibration: a warning). A method
    whose hyperparameters the calibration lacks, or means differently, is refused."""
    if cal.method == spec.name:
        return dict(cal.hyperparameters)
    made_for = registry.get(cal.method)
    theirs = {h.flag: h.name for h in made_for.hyperparameters}
    if not all(h.flag in theirs for h in spec.hyperparameters):
        raise SusxError(
            f"{what} was made for {made_for.name}, not {spec.name}: their hyperparameters mean different things",
            hint=f"calibrate with --method {spec.name}, or predict with --method {made_for.name}",
        )
    names = ", ".join(h.name for h in spec.hyperparameters)
    warn(f"calibration was made for {made_for.name}; using its {names} for {spec.name}")
    return {h.name: cal.hyperparameters[theirs[h.flag]] for h in spec.hyperparameters}


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
