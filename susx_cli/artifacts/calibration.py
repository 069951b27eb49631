"""calibration.json: the chosen method, its hyperparameters and how they were chosen.

``hyperparameters`` holds exactly the method's (its spec in method/registry.py names them), ``settings``
the other options its logits read (TIP-X: tau, normalize), ``method_record`` what the method says about
itself (GDA: where its class means and precision come from, since `predict` re-fits that head from the
same support features). Mode kfold adds ``folds``: the seeded split of the support set the hyperparameters
were chosen on. Values are checked against the method's spec where the file is used (stages/inputs.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common
from susx_cli.errors import SusxError


@dataclass
class Calibration:
    method: str
    mode: str  # val | loo | kfold | fixed
    hyperparameters: dict[str, float]
    logit_scale: float
    logit_scale_source: str  # "reference (100)" or "model"
    classes: list[str]
    model: dict[str, Any]
    objective: dict[str, Any] | None  # top-1 of the search: correct / queries (None for fixed values)
    grid: dict[str, Any] | None
    provenance: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)  # e.g. tau, normalize
    method_record: dict[str, Any] | None = None
    folds: dict[str, Any] | None = None  # mode kfold: the fold split (see kfold_record)
    logit_bias: float = 0.0  # added to the zero-shot term with --logit-scale model (SigLIP models)
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": common.CALIBRATION,
            "schema_version": common.schema_version(common.CALIBRATION),
            **self.provenance,
            "method": self.method,
            "mode": self.mode,
            "hyperparameters": self.hyperparameters,
            "settings": self.settings,
            "logit_scale": {
                "value": self.logit_scale,
                "source": self.logit_scale_source,
                **({"bias": self.logit_bias} if self.logit_bias else {}),
            },
            "objective": self.objective,
            "grid": self.grid,
            "model": self.model,
            "classes": self.classes,
            **({"method_record": self.method_record} if self.method_record is not None else {}),
            **({"folds": self.folds} if self.folds is not None else {}),
        }


# Up to this many support images the calibration file lists every image's fold; above it, the split is
# recorded by (k, seed, fold sizes, sha256 of the assignment): it is a pure function of the support
# labels, k and the seed, so that is enough to rebuild and check it, and the file stays small.
MAX_LISTED_FOLDS = 20000


def kfold_record(split: dict[str, Any]) -> dict[str, Any]:
    """What a calibration stores of a fold split ``{"k", "seed", "fold": [N ints]}`` (FoldSplit.to_dict)."""
    import hashlib

    fold = list(split["fold"])
    sizes = [0] * int(split["k"])
    for f in fold:
        sizes[f] += 1
    digest = hashlib.sha256(",".join(map(str, fold)).encode()).hexdigest()
    out = {
        "k": int(split["k"]),
        "seed": int(split["seed"]),
        "sizes": sizes,
        "fold_sha256": digest,
        "stratified": "per class, seeded shuffle, dealt round-robin",
    }
    if len(fold) <= MAX_LISTED_FOLDS:
        out["fold"] = fold
    return out


def write_calibration(path: Path, cal: Calibration) -> None:
    common.atomic_write_json(path, cal.to_json())


def read_calibration(path: str | Path) -> Calibration:
    path = Path(path)
    data = common.read_json(path, "calibration file")
    common.check_header(
        path,
        data.get("kind") if isinstance(data, dict) else None,
        data.get("schema_version") if isinstance(data, dict) else None,
        common.CALIBRATION,
    )
    try:
        return _calibration(path, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise SusxError(
            f"{path} is damaged: {exc.__class__.__name__} {exc}", hint="re-create it with susx calibrate"
        ) from None


def _calibration(path: Path, data: dict[str, Any]) -> Calibration:
    hp = data["hyperparameters"]
    if not isinstance(hp, dict):
        raise TypeError("hyperparameters is not a mapping")
    return Calibration(
        method=str(data["method"]),
        mode=str(data["mode"]),
        hyperparameters=dict(hp),  # numbers are checked against the method's spec where they are used
        settings=dict(data.get("settings") or {}),
        logit_scale=float(data["logit_scale"]["value"]),
        logit_scale_source=data["logit_scale"]["source"],
        classes=list(data["classes"]),
        model=data["model"],
        objective=data.get("objective"),
        grid=data.get("grid"),
        provenance={k: data.get(k) for k in ("tool", "created", "options", "inputs")},
        method_record=data.get("method_record"),
        folds=data.get("folds"),
        logit_bias=float(data["logit_scale"].get("bias", 0.0)),
        path=path,
    )


def support_input(cal: Calibration) -> dict[str, Any] | None:
    """The support features a calibration was chosen on (path, kind, sha256), from its provenance.

    `calibrate` records it with ``role: support``.
    """
    inputs = cal.provenance.get("inputs") or []
    tagged = [i for i in inputs if isinstance(i, dict) and i.get("role") == "support"]
    return tagged[0] if tagged else None


def existing_provenance(path: Path) -> dict[str, Any] | None:
    """The provenance of the calibration output at ``path`` (see ``common.existing_json_provenance``)."""
    return common.existing_json_provenance(path, common.CALIBRATION, read_calibration)
