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

DATA = Path(__file__).parents[1] / "data" / "method_reference"
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
    from susx_cli.stages.calibrate import calibrate_files as calibrate
    from susx_cli.stages.predict import predict_files as predict

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


# ------------------------------------------------------------------ a method added inside a test


def _toy_spec():
    """Nearest class mean of the support set, mixed with zero-shot by ``weight``: a method that exists only
    in this test (no search of its own: the registry replays its logits over the grid)."""
    from susx_cli.method.spec import Hyperparameter, MethodSpec

    def fit(W, support, values, *, logit_scale=100.0, logit_bias=0.0):
        import torch

        C = W.shape[0]
        sizes = torch.bincount(support.labels, minlength=C).clamp_min(1).to(W.dtype)
        means = torch.zeros_like(W).index_add_(0, support.labels, support.features) / sizes[:, None]
        return (W, means, values["weight"], logit_scale, logit_bias)

    def logits(state, f):
        W, means, weight, scale, bias = state
        return scale * (f @ W.T) + bias + weight * (f @ means.T)

    weight = Hyperparameter("weight", 1.0, (0.0, 10.0, 100.0), "--toy-weight", "class-mean term", 0.0, 1e3)
    return MethodSpec(
        name="toy-centroid",
        label="Toy centroid",
        color="#123456",
        marker="*",
        line_style="-.",
        needs_support=True,
        fit=fit,
        logits=logits,
        modes=("val", "kfold", "fixed"),
        hyperparameters=(weight,),
    )


def test_a_method_registered_in_a_test_runs_through_calibrate_predict_eval_and_report(tmp_path):

    import torch

    from susx_cli.artifacts import hdf5
    from susx_cli.method import registry
    from susx_cli.stages.calibrate import calibrate_files as calibrate
    from susx_cli.stages.eval import run_eval
    from susx_cli.stages.predict import predict_files as predict
    from tests.helpers import TINY, invoke, read_susx_csv
    from tests.stages.test_eval import make_cars_root

    spec = _toy_spec()
    with registry.registered(spec):
        assert "toy-centroid" in registry.names()
        cal_path = tmp_path / "toy.json"
        calibrate(
            DATA / "text.h5", DATA / "sup.h5", cal_path, method="toy-centroid", mode="kfold", device="cpu"
        )
        cal = json.loads(cal_path.read_text())
        assert cal["method"] == "toy-centroid" and set(cal["hyperparameters"]) == {"weight"}
        assert cal["grid"]["weight"] == [0.0, 10.0, 100.0] and cal["objective"]["queries"] == 20
        # the replayed search: the first weight with the most correct held-out images over the folds
        counts = []
        W, support, f = _arrays()
        from susx_cli.method.kfold import stratified_folds

        split = stratified_folds(support.labels, 4, 0, W.shape[0])
        for w in (0.0, 10.0, 100.0):
            correct = 0
            for i in range(4):
                tr, te = split.train(i), split.held_out(i)
                state = spec.fit(W, type(support)(support.features[tr], support.labels[tr]), {"weight": w})
                correct += int(
                    (spec.logits(state, support.features[te]).argmax(1) == support.labels[te]).sum()
                )
            counts.append(correct)
        assert cal["hyperparameters"]["weight"] == [0.0, 10.0, 100.0][counts.index(max(counts))]
        assert cal["objective"]["correct"] == max(counts)

        out = tmp_path / "toy.h5"
        predict(
            DATA / "text.h5",
            DATA / "test.h5",
            out,
            support_path=DATA / "sup.h5",
            calibration_path=cal_path,
            device="cpu",
        )
        got = hdf5.read_predictions(out)
        state = spec.fit(W, support, cal["hyperparameters"])
        assert got.method == "toy-centroid"
        assert np.array_equal(got.predicted, spec.logits(state, f).argmax(1).numpy())

        data = make_cars_root(tmp_path / "data")
        result = run_eval(
            ["stanford_cars"],
            data_root=data,
            work_dir=tmp_path / "work",
            results_dir=tmp_path / "results",
            models=[f"{TINY[1]}:{TINY[3]}"],
            supports=["folder-shots:2"],
            methods=["zero-shot", "toy-centroid"],
            calibrations=["kfold", "fixed"],
            hyperparameters={"toy_weight": 5.0},
            augment_passes=1,
            workers=0,
            folds=2,
        )
        rows = {(r["method"], r["calibration"]): r for r in result.rows}
        assert set(rows) == {("zero-shot", "-"), ("toy-centroid", "kfold"), ("toy-centroid", "fixed")}
        assert all(r["status"] == "done" for r in rows.values())
        invoke("report", tmp_path / "results", "-o", tmp_path / "r.md")
        invoke("report", tmp_path / "results", "-f", "csv", "-o", tmp_path / "r.csv")
        md = (tmp_path / "r.md").read_text()
        assert "Toy centroid (2-shot)" in md
        methods = {row[1] for row in read_susx_csv(tmp_path / "r.csv")}
        assert "Toy centroid (2-shot)" in methods or "toy-centroid" in methods
    assert "toy-centroid" not in registry.names()
    with pytest.raises(SusxError, match="unknown method 'toy-centroid'"):
        registry.get("toy-centroid")
    del torch


# ------------------------------------------------------------------ checks decided from the specs


def _calibration(tmp_path: Path, **changes) -> Path:
    """A fixed TIP-X calibration of the reference workspace, with ``changes`` written into its JSON."""
    from susx_cli.stages.calibrate import calibrate_files as calibrate

    path = tmp_path / "cal.json"
    calibrate(
        DATA / "text.h5",
        DATA / "sup.h5",
        path,
        method="tip-x",
        mode="fixed",
        values=FIXED["tip-x"],
        device="cpu",
        overwrite=True,
    )
    data = json.loads(path.read_text())
    for key, value in changes.items():
        data[key] = value
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("hyperparameters", "needle"),
    [
        ({"alpha": float("nan"), "beta": 3.0, "gamma": 0.7}, "alpha in"),
        ({"alpha": 1e300, "beta": 3.0, "gamma": 0.7}, "alpha in"),
        ({"alpha": 1.5, "beta": -1.0, "gamma": 0.7}, "beta in"),
        ({"alpha": 1.5, "beta": 3.0}, "give alpha, beta for tip-x"),
        ({"alpha": "x", "beta": 3.0, "gamma": 0.7}, "must be a number"),
    ],
)
def test_calibration_values_are_checked_like_the_command_line(tmp_path, hyperparameters, needle):
    from tests.helpers import invoke

    cal = _calibration(tmp_path, hyperparameters=hyperparameters)
    out = tmp_path / "p.h5"
    r = invoke(
        "predict",
        DATA / "text.h5",
        DATA / "test.h5",
        "-s",
        DATA / "sup.h5",
        "--calibration",
        cal,
        "-o",
        out,
        expect=2,
    )
    assert needle in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_values_outside_the_range_and_unknown_methods_are_one_line(tmp_path):
    from susx_cli.stages.predict import predict_files as predict
    from tests.helpers import invoke

    base = ["calibrate", DATA / "text.h5", DATA / "sup.h5", "-o", tmp_path / "c.json", "--mode", "fixed"]
    r = invoke(*base, "--alpha", "nan", "--beta", "1", "--gamma", "1", expect=2)
    # refused by check_numbers before the method's range check, in-process as in a shell
    assert "--alpha must be a finite number" in r.stderr and "got nan" in r.stderr
    r = invoke(*base, "--alpha", "1", "--beta", "1e9", "--gamma", "1", expect=2)
    assert "--beta must be" in r.stderr
    r = invoke(
        "calibrate",
        DATA / "text.h5",
        DATA / "sup.h5",
        "-o",
        tmp_path / "c.json",
        "--alpha-grid",
        "1,nan",
        expect=2,
    )
    assert "--alpha-grid" in r.stderr
    cal = _calibration(tmp_path, method="no-such-method")
    with pytest.raises(SusxError, match="unknown method 'no-such-method'"):
        predict(
            DATA / "text.h5",
            DATA / "test.h5",
            tmp_path / "p.h5",
            support_path=DATA / "sup.h5",
            calibration_path=cal,
            device="cpu",
        )
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--mode", "loo", "--folds", "3"], "--folds does nothing with --method tip-x --mode loo"),
        (
            ["--mode", "fixed", "--alpha", "1", "--beta", "1", "--gamma", "1", "--alpha-grid", "1,2"],
            "--alpha-grid does nothing",
        ),
        (["--mode", "loo", "--alpha", "1"], "--alpha does nothing"),
        (["--method", "gda", "--mode", "kfold", "--tau", "0.3"], "--tau does nothing"),
        (["--method", "tip-adapter", "--mode", "loo", "--heatmap", "h.png"], "--heatmap does nothing"),
        (
            ["--method", "tip-adapter", "--gamma-grid", "1,2"],
            "--gamma-grid does not apply to --method tip-adapter",
        ),
        (["--mode", "kfold", "--val", "v.h5"], "--val does nothing"),
    ],
)
def test_options_the_mode_or_method_does_not_read_are_refused(tmp_path, args, needle):
    from tests.helpers import invoke

    r = invoke("calibrate", DATA / "text.h5", DATA / "sup.h5", "-o", tmp_path / "c.json", *args, expect=2)
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.json").exists()


def test_in_memory_search_and_logits_match_the_cli(tmp_path):
    """susx.search + fit/logits on the arrays of the feature files give what calibrate + predict write."""
    import susx_cli as susx
    from susx_cli.artifacts import hdf5
    from tests.helpers import invoke

    grid = {"alpha": "0.5,2,8", "beta": "1,5,20", "gamma": "0.1,1"}
    cal_path, out = tmp_path / "c.json", tmp_path / "p.h5"
    flags = [x for k, v in grid.items() for x in (f"--{k}-grid", v)]
    invoke("calibrate", DATA / "text.h5", DATA / "sup.h5", "-o", cal_path, "--mode", "kfold", *flags)
    invoke(
        "predict",
        DATA / "text.h5",
        DATA / "test.h5",
        "-s",
        DATA / "sup.h5",
        "--calibration",
        cal_path,
        "-o",
        out,
    )
    text, sup = susx.load(DATA / "text.h5"), susx.load(DATA / "sup.h5")
    choice = susx.search("tip-x", text.weights, sup.features, sup.labels, mode="kfold", grid=grid)
    assert choice.values == json.loads(cal_path.read_text())["hyperparameters"]
    method = susx.methods.get("tip-x")
    state = method.fit(
        susx.tensor(text.weights), susx.support(sup.features, sup.labels), choice.values, tau=0.5
    )
    logits = method.logits(state, susx.tensor(susx.load(DATA / "test.h5").features)).numpy()
    preds = hdf5.read_predictions(out)
    assert np.array_equal(logits.argmax(1), preds.predicted)
    assert np.array_equal(np.take_along_axis(logits, preds.top5, 1).astype(np.float32), preds.scores)


def test_registered_refuses_a_taken_name_and_the_registry_needs_no_torch():
    import subprocess
    import sys

    from susx_cli.method import registry

    with pytest.raises(SusxError, match="already registered"):
        with registry.registered(registry.get("gda")):
            pass
    assert registry.names() == (
        "zero-shot",
        "tip-adapter",
        "tip-x",
        "gda",
        "tda",
        "tda-transductive",
        "dmn-zs",
        "tip-adapter+tda",
        "tip-x+tda",
    )
    code = "import sys, susx_cli as s; s.methods.names(); s.methods.get('tip-x').hyperparameters; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("methods", "calibrations", "extra", "needle"),
    [
        (["tip-x"], ["loo"], {"hyperparameters": {"gda_alpha": 1.0}}, "--gda-alpha do"),
        (["tip-x"], ["loo"], {"hyperparameters": {"alpha": 1.0}}, "--alpha does nothing"),
        (["tip-x"], ["fixed"], {"hyperparameters": {"alpha_grid": "1,2"}}, "--alpha-grid does nothing"),
        (["tip-x"], ["loo"], {"folds": 3}, "--folds/--fold-seed does nothing"),
        (["gda"], ["fixed"], {}, "--calibration fixed needs --gda-alpha for gda"),
        (
            ["tip-x"],
            ["fixed"],
            {"hyperparameters": {"alpha": float("nan"), "beta": 1.0, "gamma": 1.0}},
            "--alpha must",
        ),
    ],
)
def test_eval_refuses_options_no_run_reads(tmp_path, methods, calibrations, extra, needle):
    from susx_cli.stages.eval import EvalConfig

    with pytest.raises(SusxError, match=needle.replace("(", r"\(")):
        EvalConfig.from_options(
            num_datasets=1,
            models=["RN50:openai"],
            pretrained=[],
            supports=["folder-shots:1"],
            methods=methods,
            calibrations=calibrations,
            data_root=None,
            work_dir=tmp_path,
            results_dir=tmp_path,
            **extra,
        )


def test_an_online_method_without_support_or_calibration_predicts_with_its_defaults(tmp_path):
    """A test-time method: no support, no calibration modes; its logits walk the queries in the order
    given (a seeded permutation by default), and predict runs it with its hyperparameters' defaults."""
    import torch

    from susx_cli.artifacts import hdf5
    from susx_cli.method import registry
    from susx_cli.method.spec import Hyperparameter, MethodSpec
    from susx_cli.stages.predict import predict_files as predict

    def fit(W, support, values, *, logit_scale=100.0, logit_bias=0.0):
        assert support is None
        return (W, values["momentum"], logit_scale)

    def logits(state, f):
        W, momentum, scale = state
        memory, rows = W.clone(), []
        for x in f:  # each query nudges the class it is given to: the order matters
            row = scale * (memory @ x)
            memory[int(row.argmax())] += momentum * x
            rows.append(row)
        return torch.stack(rows)

    momentum = Hyperparameter("momentum", 0.5, (), "--toy-momentum", "memory update", 0.0, 1.0)
    spec = MethodSpec(
        "toy-online",
        "Toy online",
        "#000000",
        "v",
        ":",
        needs_support=False,
        fit=fit,
        logits=logits,
        online=True,
        hyperparameters=(momentum,),
    )
    with registry.registered(spec):
        assert not spec.calibrated
        out = tmp_path / "p.h5"
        predict(DATA / "text.h5", DATA / "test.h5", out, method="toy-online", device="cpu")
        got = hdf5.read_predictions(out)
        assert got.method == "toy-online" and got.metrics["hyperparameters"] == {"momentum": 0.5}
        W, _, f = _arrays()
        # the queries arrive in the stored seeded order; the predictions are kept in file order
        order = torch.from_numpy(got.order)
        in_stream = logits(fit(W, None, {"momentum": 0.5}), f[order]).argmax(1)
        assert np.array_equal(got.predicted[got.order], in_stream.numpy())
