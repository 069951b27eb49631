"""Record what calibrate and predict give today on a small fixed workspace, as a reference the method
registry's tests compare against (tests/method/test_method_registry.py).

Writes into tests/data/method_reference/: the workspace's feature files (text.h5, sup.h5, val.h5,
test.h5: five classes, four support images, three validation and four test images per class, embedded
with the tiny random-weight model) and expected.npz: per (method, mode) the chosen hyperparameters and
the objective's correct count, the predictions' top-5 classes and scores, and the float64 logits of the
test features. The committed record was made before the method registry existed (commit "tools/
make_method_reference.py and its record"), with that version's API; this version records the same
things through the registry. Re-run only on purpose (the feature files change with every run):

    python tools/make_method_reference.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "method_reference"
CLASSES = ["apple", "boat", "cloud", "daisy", "eagle"]
# Fixed values per method (mode fixed); the other modes search the default grids.
FIXED = {
    "tip-x": {"alpha": 1.5, "beta": 3.0, "gamma": 0.7},
    "tip-adapter": {"alpha": 2.0, "beta": 5.0},
    "gda": {"alpha": 0.5},
}
MODES = {
    "tip-x": ("val", "loo", "kfold", "fixed"),
    "tip-adapter": ("val", "loo", "kfold", "fixed"),
    "gda": ("val", "kfold", "fixed"),
}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.helpers import build_method_workspace

    with tempfile.TemporaryDirectory() as tmp:
        root = build_method_workspace(Path(tmp), CLASSES, shots=4, val=3, test=4)
        OUT.mkdir(parents=True, exist_ok=True)
        for name in ("text.h5", "sup.h5", "val.h5", "test.h5"):
            shutil.copyfile(root / name, OUT / name)
    record(OUT)


def record(data: Path) -> None:
    """Run calibrate and predict on the feature files in ``data``; write ``data/expected.npz``."""
    from susx_cli.stages.calibrate import calibrate
    from susx_cli.stages.predict import predict

    arrays: dict[str, np.ndarray] = {}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        p = predict(data / "text.h5", data / "test.h5", work / "zs.h5", method="zero-shot", device="cpu")
        arrays.update(predictions("zero-shot", p.outputs[0]))
        for method, modes in MODES.items():
            for mode in modes:
                cal_path = work / f"{method}-{mode}.json"
                result = calibrate(
                    data / "text.h5",
                    data / "sup.h5",
                    cal_path,
                    method=method,
                    mode=mode,
                    val_path=data / "val.h5" if mode == "val" else None,
                    device="cpu",
                    values=FIXED[method] if mode == "fixed" else None,
                )
                cal = json.loads(cal_path.read_text())
                objective = cal.get("objective") or {}
                runs.append(
                    {
                        "method": method,
                        "mode": mode,
                        "hyperparameters": cal["hyperparameters"],
                        "correct": objective.get("correct"),
                        "queries": objective.get("queries"),
                    }
                )
                assert result.summary["method"] == method
                out = work / f"{method}-{mode}.h5"
                predict(
                    data / "text.h5",
                    data / "test.h5",
                    out,
                    support_path=data / "sup.h5",
                    calibration_path=cal_path,
                    device="cpu",
                )
                arrays.update(predictions(f"{method}/{mode}", out))
                arrays[f"{method}/{mode}/logits"] = old_logits(data, method, cal)
    arrays["runs"] = np.array(json.dumps(runs))
    np.savez(data / "expected.npz", **arrays)


def predictions(prefix: str, path: Path) -> dict[str, np.ndarray]:
    from susx_cli.artifacts import hdf5

    preds = hdf5.read_predictions(path)
    return {f"{prefix}/top5": preds.top5, f"{prefix}/scores": preds.scores}


def old_logits(data: Path, method: str, cal: dict) -> np.ndarray:
    """The float64 test logits (n, C) of the method's fit and logits with the calibration's values."""
    import torch

    from susx_cli.artifacts import hdf5
    from susx_cli.method import registry
    from susx_cli.method.spec import Support

    text = hdf5.read_text_classifier(data / "text.h5")
    sup, test = hdf5.read_features(data / "sup.h5"), hdf5.read_features(data / "test.h5")
    W, F, f = (
        torch.from_numpy(np.asarray(x, dtype=np.float64)) for x in (text.weights, sup.features, test.features)
    )
    spec = registry.get(method)
    state = spec.fit(W, Support(F, torch.from_numpy(sup.labels)), cal["hyperparameters"], **cal["settings"])
    return spec.logits(state, f).numpy()


if __name__ == "__main__":
    main()
