"""The method registry: today's methods give the results recorded before they moved onto it, a method
registered inside a test runs through every stage, and calibration files are checked like the CLI.

The reference (tests/data/method_reference/) was recorded by tools/make_method_reference.py at the commit
that added it, before the registry existed: feature files of a five-class workspace (tiny random-weight
model) and, per method and calibration mode, the chosen hyperparameters, the objective's correct count,
the predictions' top-5 classes and scores and the float64 test logits of the functions predict called.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from susx_cli.errors import SusxError

DATA = Path(__file__).parent / "data" / "method_reference"
FIXED = {
    "tip-x": {"alpha": 1.5, "beta": 3.0, "gamma": 0.7},
    "tip-adapter": {"alpha": 2.0, "beta": 5.0},
    "gda": {"alpha": 0.5},
}


@pytest.fixture(scope="module")
def reference():
    data = np.load(DATA / "expected.npz")
    return {k: data[k] for k in data.files}


def _arrays():
    import torch

    from susx_cli.artifacts import hdf5
    from susx_cli.method.spec import Support

    t = lambda x: torch.from_numpy(np.asarray(x, dtype=np.float64))  # noqa: E731
    text, sup = hdf5.read_text_classifier(DATA / "text.h5"), hdf5.read_features(DATA / "sup.h5")
    test = hdf5.read_features(DATA / "test.h5")
    return t(text.weights), Support(t(sup.features), torch.from_numpy(sup.labels)), t(test.features)


def test_every_method_and_mode_gives_the_recorded_choice_and_predictions(tmp_path, reference):
    from susx_cli.artifacts import hdf5
    from susx_cli.method import registry
    from susx_cli.stages.calibrate import calibrate
    from susx_cli.stages.predict import predict

    W, support, f = _arrays()
    runs = json.loads(str(reference["runs"]))
    assert len(runs) == 11
    out = predict(DATA / "text.h5", DATA / "test.h5", tmp_path / "zs.h5", method="zero-shot", device="cpu")
    zs = hdf5.read_predictions(out.outputs[0])
    assert np.array_equal(zs.top5, reference["zero-shot/top5"])
    assert np.array_equal(zs.scores, reference["zero-shot/scores"])
    for run in runs:
        method, mode = run["method"], run["mode"]
        spec = registry.get(method)
        cal_path = tmp_path / f"{method}-{mode}.json"
        calibrate(
            DATA / "text.h5",
            DATA / "sup.h5",
            cal_path,
            method=method,
            mode=mode,
            device="cpu",
            val_path=DATA / "val.h5" if mode == "val" else None,
            values=FIXED[method] if mode == "fixed" else None,
        )
        cal = json.loads(cal_path.read_text())
        expected = {h.name: run["hyperparameters"][h.name] for h in spec.hyperparameters}
        assert cal["hyperparameters"] == expected, (method, mode)
        objective = cal["objective"] or {}
        assert (objective.get("correct"), objective.get("queries")) == (run["correct"], run["queries"])
        pred = tmp_path / f"{method}-{mode}.h5"
        predict(
            DATA / "text.h5",
            DATA / "test.h5",
            pred,
            support_path=DATA / "sup.h5",
            calibration_path=cal_path,
            device="cpu",
        )
        got = hdf5.read_predictions(pred)
        assert np.array_equal(got.top5, reference[f"{method}/{mode}/top5"]), (method, mode)
        assert np.array_equal(got.scores, reference[f"{method}/{mode}/scores"]), (method, mode)
        settings = {"tau": 0.5} if "tau" in spec.settings else {}
        logits = spec.logits(spec.fit(W, support, expected, **settings), f).numpy()
        assert np.array_equal(logits, reference[f"{method}/{mode}/logits"]), (method, mode)
