"""calibration.json: the chosen method and (alpha, beta, gamma, tau), with how they were chosen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from susx_cli.artifacts import common
from susx_cli.errors import SusxError


@dataclass
class Calibration:
    method: str  # tip-x | tip-adapter
    mode: str  # val | loo | fixed
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

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": common.CALIBRATION,
            "schema_version": common.SCHEMA_VERSION,
            **self.provenance,
            "method": self.method,
            "mode": self.mode,
            "hyperparameters": {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "tau": self.tau},
            "logit_scale": {"value": self.logit_scale, "source": self.logit_scale_source},
            "normalize_per_class": self.normalize_per_class,
            "objective": self.objective,
            "grid": self.grid,
            "model": self.model,
            "classes": self.classes,
        }


def write_calibration(path: Path, cal: Calibration) -> None:
    common.atomic_write_json(path, cal.to_json())


def read_calibration(path: str | Path) -> Calibration:
    path = Path(path)
    data = common.read_json(path, "calibration file")
    common.check_header(path, data.get("kind") if isinstance(data, dict) else None, data.get("schema_version") if isinstance(data, dict) else None, common.CALIBRATION)
    try:
        return _calibration(path, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise SusxError(f"{path} is damaged: {exc.__class__.__name__} {exc}", hint="re-create it with susx calibrate") from None


def _calibration(path: Path, data: dict[str, Any]) -> Calibration:
    hp = data["hyperparameters"]
    return Calibration(
        method=data["method"],
        mode=data["mode"],
        alpha=float(hp["alpha"]),
        beta=float(hp["beta"]),
        gamma=float(hp["gamma"]),
        tau=float(hp["tau"]),
        logit_scale=float(data["logit_scale"]["value"]),
        logit_scale_source=data["logit_scale"]["source"],
        normalize_per_class=bool(data.get("normalize_per_class", False)),
        classes=list(data["classes"]),
        model=data["model"],
        objective=data.get("objective"),
        grid=data.get("grid"),
        provenance={k: data.get(k) for k in ("tool", "created", "options", "inputs")},
        path=path,
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
