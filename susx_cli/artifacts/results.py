"""Result files of `susx eval`: one self-describing JSON per (dataset, model, method, support,
calibration) run, in the spirit of CLIP_benchmark's result files; `susx report` joins them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from susx_cli.artifacts import common
from susx_cli.errors import SusxError
from susx_cli.metrics import METRIC_DESCRIPTIONS

if TYPE_CHECKING:  # h5py stays unimported until a file is read
    from susx_cli.artifacts.calibration import Calibration
    from susx_cli.artifacts.hdf5 import Predictions, TextClassifier
    from susx_cli.artifacts.support import SupportSet

RESULT = "susx.result"
RESULT_SCHEMA_VERSION = 1
REQUIRED = ("dataset", "model", "method", "metrics", "config", "config_key", "zero_shot_protocol")


def config_key(config: dict[str, Any]) -> str:
    """A content hash of the run's configuration: equal keys = the same run."""
    return common.sha256_bytes(common.to_json_str(config).encode("utf-8"))[:16]


METRIC_KEYS = ("top1", "top5", "mean_per_class_recall", "ece", "nll", "n")


def result_metrics(recorded: dict[str, Any]) -> dict[str, Any]:
    """The figures a result keeps from a predictions file's metrics: top-k, mean per-class recall, ECE, NLL, n."""
    return {
        k: v
        for k, v in recorded.items()
        if k in METRIC_KEYS or (k.startswith("top") and isinstance(v, float))
    }


STREAM_KEYS = (
    "order",
    "order_generator",
    "order_seeds",
    "tda_preset",
    "order_seed_metrics",
    "over_order_seeds",
)


def stream_record(recorded: dict[str, Any]) -> dict[str, Any]:
    """A test-time run's ``stream`` entry (its order, seeds, preset and per-seed metrics) and, over several
    order seeds, ``metrics`` as the mean over them (the per-seed figures stay in ``stream``); {} otherwise."""
    stream = {k: recorded[k] for k in STREAM_KEYS if k in recorded}
    if not stream:
        return {}
    out: dict[str, Any] = {"stream": stream}
    over = recorded.get("over_order_seeds")
    if over:
        out["metrics"] = {**{k: v["mean"] for k, v in over.items()}, "n": recorded.get("n")}
        out["metrics_over"] = f"mean over order seeds {', '.join(map(str, recorded['order_seeds']))}"
    return out


def per_class_record(predictions: Predictions) -> dict[str, Any] | None:
    """A result's per-class entry: class names, recall (%, null for a class without queries), queries and
    support images per class (support: null without a support set), and the confusion matrix (rows: true
    class, columns: predicted) or, above metrics.CONFUSION_MATRIX_MAX_CLASSES classes, ``top_confusions``:
    per class its most frequent wrong predictions as [class index, count] pairs. None for older predictions."""
    pc = predictions.per_class
    if pc is None:
        return None
    out: dict[str, Any] = {
        "classes": list(predictions.classes),
        "recall": [None if r != r else float(r) for r in pc.recall],  # NaN -> null: JSON has no NaN
        "queries": pc.queries.tolist(),
        "support": None if pc.support is None else pc.support.tolist(),
    }
    if pc.confusion is not None:
        out["confusion"] = pc.confusion.tolist()
    else:
        top, counts = pc.confusions()
        out["top_confusions"] = [
            [[int(c), int(n)] for c, n in zip(cs, ns, strict=True) if c >= 0]
            for cs, ns in zip(top, counts, strict=True)
        ]
    return out


def calibration_record(cal: Calibration, path: Path, split: str | None) -> dict[str, Any]:
    """What a result says about its calibration (``split``: the labelled split of mode val)."""
    return {
        "mode": cal.mode,
        "split": split,
        "hyperparameters": cal.hyperparameters,
        "settings": cal.settings,
        "objective": cal.objective,
        "grid_size": (cal.grid or {}).get("size"),
        "path": str(path),
    }


def support_record(config: dict[str, Any], support: SupportSet) -> dict[str, Any]:
    """A result's support entry: its configuration plus the folder's source, size and class balance."""
    counts = support.counts()
    return {
        **config,
        "path": str(support.root),
        "source": (support.provenance.get("options") or {}).get("source"),
        "size": len(support.rows),
        "per_class_min": min(counts),
        "per_class_max": max(counts),
    }


def run_record(
    config: dict[str, Any],
    *,
    seed: int | None,
    dataset: dict[str, Any],
    text: TextClassifier,
    predictions: Predictions,
    support: dict[str, Any] | None,
    calibration: dict[str, Any] | None,
    logit_scale_source: str,
    prompt_options: dict[str, Any],
    artifacts: dict[str, str | None],
) -> dict[str, Any]:
    """The result of one eval run (write it with ``write_result``).

    ``seed``: the support sample's seed (None when the run reads none); ``dataset``: id, name, split,
    data_root, split_file; ``prompt_options``: templates and photo
    template of the prompts; ``artifacts``: the path of every file the run used, by role.
    """
    return {
        "config_key": config_key(config),
        "config": config,
        "seed": seed,
        "dataset": {
            **{k: dataset[k] for k in ("id", "name", "split")},
            "num_classes": len(text.classes),
            "n_queries": int(predictions.labels.shape[0]),
            "data_root": dataset["data_root"],
            "split_file": dataset["split_file"],
        },
        "model": {
            "arch": config["model"],
            "pretrained": config["pretrained"],
            "random_weights": text.model.random_weights,
            "identity": text.model.to_dict(),
        },
        "method": config["method"],
        "support": support,
        "calibration": calibration,
        "zero_shot_protocol": {
            "logit_scale": predictions.metrics.get("logit_scale", 100.0),
            "logit_scale_source": logit_scale_source,
            "text_pool": text.pool,
            "templates": prompt_options["templates"],
            "photo_template": prompt_options["photo_template"],
            "texts_per_class_mean": float(text.num_texts.mean()),
        },
        "metrics": result_metrics(predictions.metrics),
        **stream_record(predictions.metrics),
        "metric_descriptions": {k: v for k, v in METRIC_DESCRIPTIONS.items() if k in predictions.metrics},
        "per_class": per_class_record(predictions),
        "artifacts": artifacts,
    }


def write_result(path: Path, result: dict[str, Any]) -> Path:
    record = {
        "kind": RESULT,
        "schema_version": RESULT_SCHEMA_VERSION,
        "tool": common.tool_info(),
        "created": common.now_iso(),
        **result,
    }
    common.atomic_write_json(path, record)
    return path


def read_result(path: Path) -> dict[str, Any]:
    data = common.read_json(path, "result file")
    if not isinstance(data, dict) or data.get("kind") != RESULT:
        got = (
            f"a {data.get('kind')} file"
            if isinstance(data, dict) and data.get("kind")
            else "not a susx result file"
        )
        raise SusxError(f"{path} is {got}, expected {RESULT}", hint="pass result files written by susx eval")
    if data.get("schema_version") != RESULT_SCHEMA_VERSION:
        raise SusxError(
            f"{path} has result schema version {data.get('schema_version')}, this susx reads {RESULT_SCHEMA_VERSION}",
            hint="re-run susx eval with this susx version",
        )
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise SusxError(
            f"{path} lacks {', '.join(missing)}", hint="the file is damaged or hand-edited; re-run susx eval"
        )
    data["_path"] = str(path)
    return data


def existing_key(path: Path) -> str | None:
    """The config key of an existing result file, or None when there is none (or it is unreadable)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data.get("config_key") if isinstance(data, dict) and data.get("kind") == RESULT else None


def _read_record(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_failed_result(path: Path) -> bool:
    """Whether ``path`` holds a result of a failed run (replaced by the next attempt without --overwrite)."""
    data = _read_record(path) if path.is_file() else None
    return isinstance(data, dict) and data.get("kind") == RESULT and data.get("status") == "failed"


def claim_result_path(path: Path) -> None:
    """Refuse to write a result where a file that is not a result of susx's lies (--overwrite or not)."""
    if path.is_symlink() and not path.exists():
        raise common.foreign_output(path)
    if not path.exists():
        return
    data = _read_record(path) if path.is_file() else None
    if not (isinstance(data, dict) and data.get("kind") == RESULT):
        raise common.foreign_output(path)


def collect(paths: list[Path]) -> list[dict[str, Any]]:
    """Result files from files and folders (``*.json`` directly inside or below a folder)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.json") if q.is_file())
            if not found:
                raise SusxError(
                    f"{p} holds no .json result files", hint="pass the --results-dir of susx eval"
                )
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise SusxError(f"{p} does not exist", hint="pass result files or folders written by susx eval")
    return [read_result(f) for f in files]
