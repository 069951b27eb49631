"""`predict`: classify query features (or images, embedded on the fly) with zero-shot, Tip-Adapter or TIP-X."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from susx_cli import runtime
from susx_cli.artifacts import calibration as cal_io
from susx_cli.artifacts import common, hdf5
from susx_cli.classnames import check_same_classes
from susx_cli.errors import SusxError
from susx_cli.metrics import classification_metrics, topk_indices
from susx_cli.progress import info, warn
from susx_cli.stages.inputs import as_float64, load_queries, load_text_and_support
from susx_cli.stages.results import StageResult

METHODS = ("zero-shot", "tip-adapter", "tip-x")


@dataclass
class PredictResult(StageResult):
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def table(self):
        if not self.metrics:
            return None
        from rich.table import Table

        table = Table(title=f"susx predict: {self.summary.get('method')}")
        for col in ("method", *[k for k in self.metrics if k != "n"], "n"):
            table.add_column(col, justify="right" if col != "method" else "left")
        table.add_row(
            self.summary.get("method", ""),
            *[f"{v:.2f}" for k, v in self.metrics.items() if k != "n"],
            str(self.metrics["n"]),
        )
        return table

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "metrics": self.metrics}


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
    cal = cal_io.read_calibration(calibration_path) if calibration_path else None
    method = method or (cal.method if cal else "zero-shot")
    if method not in METHODS:
        raise SusxError(f"unknown method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    if method != "zero-shot":
        if support_path is None or cal is None:
            raise SusxError(f"--method {method} needs --support FEATURES.h5 and --calibration FILE", hint="or use --method zero-shot")
        if cal.method != method:
            warn(f"calibration was made for {cal.method}; using its alpha and beta for {method}")
    inputs = load_text_and_support(text_path, support_path if method != "zero-shot" else None)
    text = inputs.text
    if cal is not None:
        check_same_classes(text.classes, cal.classes, str(text_path), str(calibration_path))
        if hdf5.ModelIdentity.from_dict(cal.model).key() != text.model.key():
            raise SusxError(
                f"{calibration_path} was made for {hdf5.ModelIdentity.from_dict(cal.model).describe()}, "
                f"the text classifier is {text.model.describe()}",
                hint="calibrate again with this model's features",
            )

    query_features = _query_features(query_path, output, text_path, embed_options, overwrite)
    options = {"method": method, "query": str(query_path)}
    ids = [common.identity(text_path, common.TEXT_CLASSIFIER), common.identity(query_features, common.IMAGE_FEATURES)]
    if method != "zero-shot":
        ids += [common.identity(support_path, common.IMAGE_FEATURES), common.identity(calibration_path, common.CALIBRATION)]
    prov = common.provenance(options, ids)
    if common.decide_existing(output, hdf5.existing_provenance(output, common.PREDICTIONS), prov, overwrite):
        info(f"{output} is up to date (same inputs and options); nothing to do")
        existing = hdf5.read_predictions(output).metrics
        metrics = {k: v for k, v in existing.items() if k == "n" or k.startswith("top") or k == "mean_per_class_recall"}
        return PredictResult("predict", [output], skipped=True, summary={"method": method},
                             metrics=metrics if "n" in metrics else {})

    q = load_queries(query_features, text, need_labels=False, what="query set")
    as_t = lambda x: as_float64(x, dev)  # noqa: E731
    kwargs: dict[str, Any] = {}
    scale = cal.logit_scale if cal else 100.0
    if method != "zero-shot":
        sup = inputs.support
        kwargs = dict(
            F=as_t(sup.features),
            y=torch.from_numpy(sup.labels).to(dev),
            alpha=cal.alpha,
            beta=cal.beta,
            gamma=cal.gamma if method == "tip-x" else 0.0,
            tau=cal.tau,
            normalize=cal.normalize_per_class,
        )
    logits = tipx.logits(method, as_t(q.features), as_t(text.weights), logit_scale=scale, **kwargs).cpu().numpy()
    top = topk_indices(logits, 5)
    scores = np.take_along_axis(logits, top, axis=1)
    metrics = classification_metrics(top, q.labels, len(text.classes)) if q.has_labels else {}
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
        metrics={**metrics, "method": method, "logit_scale": scale,
                 "hyperparameters": None if cal is None or method == "zero-shot" else
                 {"alpha": cal.alpha, "beta": cal.beta, "gamma": kwargs.get("gamma"), "tau": cal.tau}},
        provenance=prov,
    )
    hdf5.write_predictions(output, preds)
    outputs = [output] + ([query_features] if query_features != query_path else [])
    return PredictResult("predict", outputs, summary={"method": method, "queries": len(q.keys)}, metrics=metrics)


def _query_features(query_path: Path, output: Path, text_path: Path, embed_options: dict | None, overwrite: bool) -> Path:
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
