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
from susx_cli.artifacts import outputs as output_paths
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
from susx_cli.stages.inputs import as_float64, load_method_inputs, support_tensors
from susx_cli.stages.options import PredictOptions, StreamOptions
from susx_cli.stages.results import StageResult


@dataclass
class PredictResult(StageResult):
    """``metrics``: top-k accuracies, mean per-class recall, ECE, NLL and n (empty without labels);
    ``worst_classes``: up to 10 classes with the lowest recall (see ``worst_classes``)."""

    stage: str = field(default="predict", init=False)
    metrics: dict[str, Any] = field(default_factory=dict)
    worst_classes: list[dict[str, Any]] = field(default_factory=list)
    over_order_seeds: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> mean, std

    def to_json(self) -> dict[str, Any]:
        out = {**super().to_json(), "metrics": self.metrics, "worst_classes": self.worst_classes}
        return {**out, "over_order_seeds": self.over_order_seeds} if self.over_order_seeds else out


MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Orders:
    """The passes of one predict: a seeded permutation per seed, one file-order pass (``seeds`` empty) for
    an online method with --order file, or one plain pass for a method that reads no order."""

    online: bool
    seeds: tuple[int, ...]
    n: int

    def orders(self) -> list[np.ndarray | None]:
        """Per pass, the stream (position -> query row), or None for a method that reads no order."""
        from susx_cli.method.tda import stream_order

        if not self.online:
            return [None]
        if not self.seeds:
            return [np.arange(self.n)]
        return [stream_order(self.n, seed).numpy() for seed in self.seeds]

    def first(self) -> np.ndarray | None:
        return self.orders()[0] if self.online else None

    def record(self) -> dict[str, Any]:
        """What the predictions' metrics and provenance say about the order (nothing for a static method)."""
        if not self.online:
            return {}
        if not self.seeds:
            return {"order": "file (diagnostic: class folders come grouped by class)"}
        return {
            "order": "seeded",
            "order_generator": "torch.randperm, torch.Generator",
            "order_seeds": list(self.seeds),
        }


def plan_orders(spec: registry.MethodSpec, stream: StreamOptions, n: int) -> Orders:
    """The passes ``stream`` asks of ``spec``; one error line for an order option it does not read or a bad seed."""
    given = stream.file_order or bool(stream.seeds)
    if given and not spec.online:
        raise SusxError(
            f"--order and --order-seed do not apply to --method {spec.name}: its predictions do not depend on "
            "the order of the queries",
            hint="drop them, or use an online test-time method",
        )
    if stream.file_order and stream.seeds:
        raise SusxError("--order file reads no --order-seed", hint="give one of them")
    bad = [s for s in stream.seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise SusxError(f"order seed {bad[0]} is out of range", hint=f"use integers in 0..{MAX_SEED}")
    if len(set(stream.seeds)) != len(stream.seeds):
        raise SusxError("an order seed is given twice", hint="give each --order-seed once")
    seeds = () if stream.file_order else (stream.seeds or (0,))
    return Orders(spec.online, seeds, n)


def stream_values(spec: registry.MethodSpec, stream: StreamOptions) -> dict[str, float]:
    """The method's stream values (defaults, or its preset's); --dataset only with a preset that reads it."""
    if stream.dataset is not None and stream.preset in (None, "default"):
        raise SusxError("--dataset does nothing without --tda-preset paper", hint="drop --dataset")
    return spec.stream_values(stream.preset, stream.dataset)


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
        stream=options.stream,
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
    stream: StreamOptions = StreamOptions(),
) -> PredictResult:
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
    if spec is not None and not spec.needs_support and support_path is not None:
        # A support set with nothing that reads it would be a zero-shot run the user did not ask for.
        raise SusxError(
            f"--support is given but {spec.name} reads no support set"
            + ("" if method else " (without --calibration or --method, predict runs zero-shot)"),
            hint="add --calibration FILE made for a support method, or drop --support for zero-shot",
        )
    output_paths.check_paths(
        [text_path, query_path, support_path, calibration_path], [("-o/--output", output)]
    )
    query_features = _query_features(query_path, output, text_path, embed_options, overwrite)
    inputs = load_method_inputs(
        text_path, support_path if needs_support else None, query_features, calibration_path
    )
    text, q, cal = inputs.text, inputs.query, inputs.calibration
    spec = spec or registry.get(cal.method)
    method = spec.name
    values = _values_for(spec, cal, str(calibration_path)) if spec.calibrated else spec.defaults()
    orders = plan_orders(spec, stream, len(q.keys))
    stream_values_ = stream_values(spec, stream)
    if cal is not None and spec.needs_support:
        _warn_if_tuned_on_queries(cal, inputs.ids["query"], calibration_path)

    # The query is identified by its features' content hash (an input below), not by how its path was typed.
    options = {"method": method, **orders.record()}
    if spec.stream:
        options["stream"] = stream_values_
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
            over_order_seeds=existing.metrics.get("over_order_seeds", {}),
        )

    scale = cal.logit_scale if cal else 100.0
    bias = cal.logit_bias if cal else 0.0
    settings = {k: v for k, v in (cal.settings if cal else {}).items() if k in spec.settings}
    support = None
    if spec.needs_support:
        support = support_tensors(inputs.support, dev)
    state = spec.fit(
        as_float64(text.weights, dev),
        support,
        {**values, **stream_values_},
        logit_scale=scale,
        logit_bias=bias,
        **settings,
    )
    queries = as_float64(q.features, dev)
    scored = [
        _score(spec.logits, state, queries, order, q.labels if q.has_labels else None, len(text.classes))
        for order in orders.orders()
    ]
    logits, metrics = scored[0]
    top = topk_indices(logits, 5)
    per_class = None
    if q.has_labels:
        per_class = per_class_results(
            top[:, 0], q.labels, len(text.classes), inputs.support.labels if support is not None else None
        )
    if not q.has_labels and (q.labels >= 0).any():
        warn("some queries have labels and some do not: no metrics computed")
    over_seeds = over_order_seeds(orders.seeds, [m for _, m in scored]) if len(scored) > 1 else {}
    hyperparameters = {**values, **stream_values_, **settings}
    preds = hdf5.Predictions(
        predicted=top[:, 0],
        top5=top,
        scores=np.take_along_axis(logits, top, axis=1),
        labels=q.labels,
        keys=q.keys,
        classes=text.classes,
        method=method,
        metrics={
            **metrics,
            "method": method,
            "logit_scale": scale,
            **({"logit_bias": bias} if bias else {}),
            "hyperparameters": hyperparameters or None,
            **orders.record(),
            **({"tda_preset": stream.preset or "default"} if spec.presets else {}),
            **over_seeds,
        },
        provenance=prov,
        per_class=per_class,
        order=orders.first(),
        order_seed=orders.seeds[0] if orders.seeds else None,
    )
    hdf5.write_predictions(output, preds)
    outputs = [output] + ([query_features] if query_features != query_path else [])
    return PredictResult(
        outputs,
        summary=_predict_summary(preds),
        metrics=summary_metrics(metrics),
        worst_classes=worst_classes(per_class, text.classes),
        over_order_seeds=over_seeds.get("over_order_seeds", {}),
    )


def _score(method_logits, state, queries, order, labels: np.ndarray | None, num_classes: int):
    """(logits (n, C) in file order, metrics) of one pass; an online method reads the queries in stream
    ``order`` (None: file order) and its logits go back to file order."""
    import torch

    if order is None:
        logits = method_logits(state, queries).cpu().numpy()
    else:
        rows = torch.from_numpy(order).to(queries.device)
        logits = np.empty((queries.shape[0], num_classes))
        logits[order] = method_logits(state, queries[rows]).cpu().numpy()
    metrics = {}
    if labels is not None:
        top = topk_indices(logits, 5)
        metrics = {**classification_metrics(top, labels, num_classes), **calibration_metrics(logits, labels)}
    return logits, metrics


def over_order_seeds(seeds: tuple[int, ...], metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Each order seed's metrics, and their mean and sample standard deviation (ddof 1) per metric."""
    if not metrics[0]:
        return {"order_seed_metrics": [{"seed": s} for s in seeds]}
    names = [k for k in metrics[0] if k != "n"]
    table = np.array([[m[k] for k in names] for m in metrics], dtype=np.float64)
    return {
        "order_seed_metrics": [{"seed": s, **m} for s, m in zip(seeds, metrics, strict=True)],
        "over_order_seeds": {
            k: {"mean": float(table[:, i].mean()), "std": float(table[:, i].std(ddof=1))}
            for i, k in enumerate(names)
        },
    }


def _predict_summary(preds: hdf5.Predictions) -> dict[str, Any]:
    """The `predict` summary, the same keys whether the predictions were just written or read back (an
    online method's adds its stream order: seeded, or the file order as a diagnostic)."""
    order = {"order": preds.metrics["order"]} if "order" in preds.metrics else {}
    return {"method": preds.method, "queries": len(preds.keys), **order}


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
