"""calibration.json: the chosen method and its hyperparameters, with how they were chosen.

TIP-X / Tip-Adapter record (alpha, beta, gamma, tau); GDA records alpha only, plus a ``gda`` entry
saying where its class means and precision come from (which support file, which estimator), since
`predict` re-fits that head from the same support features. Mode kfold adds ``folds``: the seeded
split of the support set the hyperparameters were chosen on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common
from susx_cli.errors import SusxError


@dataclass
class Calibration:
    method: str  # tip-x | tip-adapter | gda
    mode: str  # val | loo | kfold | fixed
    alpha: float
    beta: float
    gamma: float
    tau: float
    logit_scale: float
    logit_scale_source: str  # "reference (100)" or "model"
    normalize_per_class: bool
    classes: list[str]
    model: dict[str, Any]
    objective: dict[str, Any] | None
    grid: dict[str, Any] | None
    provenance: dict[str, Any]
    path: Path | None = None
    gda: dict[str, Any] | None = None  # GDA: mean/precision provenance (support file, estimator)
    folds: dict[str, Any] | None = None  # mode kfold: the fold split (see kfold_record)
    logit_bias: float = 0.0  # added to the zero-shot term with --logit-scale model (SigLIP models)

    def hyperparameters(self) -> dict[str, float]:
        """The values this method uses: GDA has alpha only; the others alpha, beta, gamma and tau."""
        if self.method == "gda":
            return {"alpha": self.alpha}
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "tau": self.tau}

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": common.CALIBRATION,
            "schema_version": common.SCHEMA_VERSION,
            **self.provenance,
            "method": self.method,
            "mode": self.mode,
            "hyperparameters": self.hyperparameters(),
            "logit_scale": {
                "value": self.logit_scale,
                "source": self.logit_scale_source,
                **({"bias": self.logit_bias} if self.logit_bias else {}),
            },
            "normalize_per_class": self.normalize_per_class,
            "objective": self.objective,
            "grid": self.grid,
            "model": self.model,
            "classes": self.classes,
            **({"gda": self.gda} if self.gda is not None else {}),
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
    return Calibration(
        method=data["method"],
        mode=data["mode"],
        alpha=float(hp["alpha"]),
        beta=float(hp.get("beta", 0.0)),  # GDA records alpha only
        gamma=float(hp.get("gamma", 0.0)),
        tau=float(hp.get("tau", 0.5)),
        logit_scale=float(data["logit_scale"]["value"]),
        logit_scale_source=data["logit_scale"]["source"],
        normalize_per_class=bool(data.get("normalize_per_class", False)),
        classes=list(data["classes"]),
        model=data["model"],
        objective=data.get("objective"),
        grid=data.get("grid"),
        provenance={k: data.get(k) for k in ("tool", "created", "options", "inputs")},
        path=path,
        gda=data.get("gda"),
        folds=data.get("folds"),
        logit_bias=float(data["logit_scale"].get("bias", 0.0)),  # absent: no bias (and older files)
    )


def support_input(cal: Calibration) -> dict[str, Any] | None:
    """The support features a calibration was chosen on (path, kind, sha256), from its provenance.

    `calibrate` records it with ``role: support``; files written before that record the text
    classifier first and the support features as the first image-features input.
    """
    inputs = cal.provenance.get("inputs") or []
    tagged = [i for i in inputs if isinstance(i, dict) and i.get("role") == "support"]
    if tagged:
        return tagged[0]
    images = [i for i in inputs if isinstance(i, dict) and i.get("kind") == common.IMAGE_FEATURES]
    return images[0] if images else None


def existing_provenance(path: Path) -> dict[str, Any] | None:
    """The provenance of the calibration output at ``path`` (see ``common.existing_json_provenance``)."""
    return common.existing_json_provenance(path, common.CALIBRATION, read_calibration)
