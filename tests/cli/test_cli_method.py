"""Calibrate and predict through the CLI, their bad inputs, and the demo pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from susx_cli.artifacts import hdf5
from tests.helpers import TINY, build_method_workspace, invoke

CLASSES = ["zebra", "apple", "mango", "kiwi"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """prompts, a 3-shot support set, text classifier, support/val/test features."""
    return build_method_workspace(tmp_path_factory.mktemp("method"), CLASSES)


@pytest.fixture()
def w(built, monkeypatch):
    monkeypatch.chdir(built)
    return built


def test_calibrate_val_records_choice_and_objective(w):
    r = invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "cal-val.json",
        "--val",
        "val.h5",
        "--alpha-grid",
        "0.1:50:5",
        "--beta-grid",
        "1:50:6",
        "--gamma-grid",
        "0.1,1,5",
        "--heatmap",
        "heat.png",
        "--json",
        "--overwrite",
    )
    out = json.loads(r.stdout)
    assert out["outputs"] == ["cal-val.json", "heat.png"]
    cal = json.loads((w / "cal-val.json").read_text())
    assert cal["kind"] == "susx.calibration" and cal["mode"] == "val" and cal["method"] == "tip-x"
    assert cal["grid"]["size"] == 5 * 6 * 3
    assert cal["hyperparameters"]["alpha"] in cal["grid"]["alpha"] and cal["settings"]["tau"] == 0.5
    assert cal["objective"]["queries"] == 16 and 0 <= cal["objective"]["value"] <= 1
    assert {i["kind"] for i in cal["inputs"]} == {"susx.text_classifier", "susx.image_features"}
    assert (w / "heat.png").read_bytes()[:4] == b"\x89PNG"
    # the recorded objective is the accuracy predict reproduces on the same split
    invoke(
        "predict",
        "text.h5",
        "val.h5",
        "-s",
        "sup.h5",
        "--calibration",
        "cal-val.json",
        "-o",
        "pv.h5",
        "--overwrite",
    )
    top1 = hdf5.read_predictions(w / "pv.h5").metrics["top1"]
    assert abs(top1 - 100 * cal["objective"]["value"]) < 1e-6


def test_loo_and_fixed_modes_and_tip_adapter(w):
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "loo.json",
        "--mode",
        "loo",
        "--alpha-grid",
        "1,10",
        "--beta-grid",
        "1,5",
        "--gamma-grid",
        "0.1,2",
        "--overwrite",
    )
    loo = json.loads((w / "loo.json").read_text())
    assert loo["mode"] == "loo" and loo["objective"]["queries"] == 12
    assert "leave-one-out" in loo["objective"]["on"]
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "ta.json",
        "--method",
        "tip-adapter",
        "--alpha-grid",
        "1,10",
        "--beta-grid",
        "1,5",
        "--overwrite",
    )
    ta = json.loads((w / "ta.json").read_text())
    assert set(ta["hyperparameters"]) == {"alpha", "beta"} and "gamma" not in ta["grid"]
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "fx.json",
        "--mode",
        "fixed",
        "--alpha",
        "2",
        "--beta",
        "3",
        "--gamma",
        "4",
        "--overwrite",
    )
    fx = json.loads((w / "fx.json").read_text())
    assert (
        fx["hyperparameters"] == {"alpha": 2.0, "beta": 3.0, "gamma": 4.0}
        and fx["settings"] == {"tau": 0.5, "normalize": False}
        and fx["objective"] is None
    )


def test_predict_writes_predictions_and_metrics(w):
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "fx.json",
        "--mode",
        "fixed",
        "--alpha",
        "2",
        "--beta",
        "3",
        "--gamma",
        "4",
        "--overwrite",
    )
    r = invoke(
        "predict",
        "text.h5",
        "test.h5",
        "-s",
        "sup.h5",
        "--calibration",
        "fx.json",
        "-o",
        "pred.h5",
        "--json",
        "--overwrite",
    )
    out = json.loads(r.stdout)
    assert set(out["metrics"]) >= {"top1", "mean_per_class_recall", "n"} and out["metrics"]["n"] == 20
    p = hdf5.read_predictions(w / "pred.h5")
    assert p.method == "tip-x" and p.top5.shape == (20, 4) and (p.top5[:, 0] == p.predicted).all()
    test = hdf5.read_features(w / "test.h5")
    assert p.keys == test.keys and (p.labels == test.labels).all()
    assert abs(out["metrics"]["top1"] - 100 * float((p.predicted == p.labels).mean())) < 1e-9
    # zero-shot equals argmax of f W
    invoke("predict", "text.h5", "test.h5", "--method", "zero-shot", "-o", "zs.h5", "--overwrite")
    zs = hdf5.read_predictions(w / "zs.h5")
    tc = hdf5.read_text_classifier(w / "text.h5")
    assert (zs.predicted == (test.features @ tc.weights.T).argmax(1)).all()
    # the table goes to stderr, the path to stdout
    r = invoke("predict", "text.h5", "test.h5", "--method", "zero-shot", "-o", "zs.h5")
    assert r.stdout.strip() == "zs.h5"


@pytest.mark.parametrize(
    "case", ["nan", "unnormalised", "empty", "other-model", "missing-class", "grid", "other-cal"]
)
def test_calibrate_and_predict_refuse_bad_inputs(w, case, tmp_path):
    bad = tmp_path / "bad.h5"
    args = ["calibrate", "text.h5", bad, "-o", tmp_path / "c.json"]
    needle = {
        "nan": "NaN",
        "unnormalised": "not L2-normalised",
        "empty": "holds no rows",
        "other-model": "embedded with",
        "missing-class": "no support images: 'kiwi'",
        "grid": "has no values",
        "other-cal": "class lists",
    }[case]
    import shutil

    shutil.copy(w / "sup.h5", bad)
    with h5py.File(bad, "a") as f:
        feats = f["features"][()]
        if case == "nan":
            feats[1, 3] = np.nan
            f["features"][...] = feats
        elif case == "unnormalised":
            f["features"][...] = feats * 2
        elif case == "empty":
            for name in ("features", "labels", "keys"):
                f[name].resize(0, axis=0)
        elif case == "other-model":
            model = json.loads(f.attrs["model"])
            model["arch"] = "ViT-B-32"
            f.attrs["model"] = json.dumps(model)
        elif case == "missing-class":
            keep = f["labels"][()] != 3
            for name in ("features", "labels", "keys"):
                data = f[name][()][keep]
                f[name].resize(int(keep.sum()), axis=0)
                f[name][...] = data
    if case == "grid":
        args = ["calibrate", "text.h5", "sup.h5", "-o", tmp_path / "c.json", "--alpha-grid", ","]
    if case == "other-cal":
        (tmp_path / "o.txt").write_text("a\nb\nc\nd\n")
        invoke("prompts", "-c", tmp_path / "o.txt", "-o", tmp_path / "o.json")
        invoke("embed", tmp_path / "o.json", "-o", tmp_path / "o.h5", *TINY)
        invoke(
            "calibrate",
            "text.h5",
            "sup.h5",
            "-o",
            tmp_path / "c0.json",
            "--mode",
            "fixed",
            "--alpha",
            "1",
            "--beta",
            "1",
            "--gamma",
            "1",
        )
        args = [
            "predict",
            tmp_path / "o.h5",
            "test.h5",
            "-s",
            "sup.h5",
            "--calibration",
            tmp_path / "c0.json",
            "-o",
            tmp_path / "p.h5",
        ]
    r = invoke(*args, expect=2)
    assert needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.json").exists()


def test_empty_query_folder_is_refused(w, tmp_path):
    (tmp_path / "none").mkdir()
    r = invoke("predict", "text.h5", tmp_path / "none", "--unlabelled", "-o", tmp_path / "p.h5", expect=2)
    assert "holds no images" in r.stderr


@pytest.mark.slow  # the demo runs a diffusers pipeline
def test_demo_runs_every_stage_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("demo", "-o", "run", "--json")
    out = json.loads(r.stdout)
    assert out["random_weights"] is True
    methods = [(row["support"], row["method"]) for row in out["results"]]
    assert ("-", "zero-shot") in methods and any(m == "tip-x" for _, m in methods)
    stages = [s["stage"] for s in out["stages"]]
    assert stages[0] == "prompts" and {"curate", "embed", "calibrate", "predict"} <= set(stages)
    for s in out["stages"]:
        for p in s["outputs"]:
            assert Path(p).exists(), p
    r = invoke("demo", "-o", "run", expect=2)
    assert "not empty" in r.stderr
    assert (tmp_path / "run" / "_DEMO.json").is_file()


@pytest.mark.slow  # the demo runs a diffusers pipeline
def test_demo_overwrite_removes_only_what_a_demo_wrote(tmp_path, monkeypatch):
    from susx_cli.artifacts import demo_folder
    from susx_cli.stages import demo
    from susx_cli.stages.options import DemoOptions

    monkeypatch.chdir(tmp_path)
    # A finished demo run, faked: its marker lists what it wrote.
    (tmp_path / "run" / "images").mkdir(parents=True)
    (tmp_path / "run" / "images" / "old.png").write_bytes(b"old")
    demo_folder.write_marker(tmp_path / "run")
    (tmp_path / "run" / "mine.txt").write_text("the user's")
    r = invoke("demo", "-o", "run", "--overwrite", expect=2)
    assert "mine.txt" in r.stderr and "hint" in r.stderr and "--overwrite" not in r.stderr.split("hint")[1]
    assert (tmp_path / "run" / "mine.txt").read_text() == "the user's"
    (tmp_path / "run" / "mine.txt").unlink()
    # A run that fails leaves the old one in place.
    monkeypatch.setattr(
        demo, "make_query_images", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
    )
    with pytest.raises(RuntimeError):
        demo.demo(DemoOptions(output=tmp_path / "run", overwrite=True))
    assert (tmp_path / "run" / "images" / "old.png").read_bytes() == b"old"
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    invoke("demo", "-o", "run", "--overwrite")
    assert not (tmp_path / "run" / "images" / "old.png").exists()
    assert (tmp_path / "run" / "text.h5").is_file() and not list(tmp_path.glob(".run.*"))
    listed = demo_folder.demo_files(tmp_path / "run")
    assert "text.h5" in listed and demo_folder.foreign_entries(tmp_path / "run", listed) == []


def test_demo_refuses_a_user_folder_even_with_overwrite(tmp_path):
    from susx_cli.artifacts.demo_folder import check_output
    from susx_cli.errors import SusxError

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(SusxError) as err:
        check_output(tmp_path / "mine", overwrite=True)
    assert "not made by susx demo" in err.value.message and "--overwrite" not in err.value.hint
    check_output(tmp_path / "new", overwrite=False)  # absent: fine


def _damage(src: Path, dst: Path, change) -> Path:
    """A copy of an HDF5 artifact with ``change(f)`` applied in place."""
    import shutil

    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        change(f)
    return dst


def _set(f, name, data):
    del f[name]
    f.create_dataset(name, data=data, maxshape=(None, *data.shape[1:]))


@pytest.mark.parametrize(
    "case",
    [
        "support-label",
        "query-label",
        "short-keys",
        "text-rows",
        "other-support",
        "query-nan",
        "query-model",
        "calibrate-val-label",
    ],
)
def test_load_method_inputs_refuses_artifacts_that_do_not_fit(w, case, tmp_path):
    """Each hand-damaged artifact is a one-line error with a non-zero exit, from calibrate or predict."""
    cal = tmp_path / "cal.json"
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        cal,
        "--mode",
        "fixed",
        "--alpha",
        "1",
        "--beta",
        "1",
        "--gamma",
        "1",
    )
    text, sup, test = Path("text.h5"), Path("sup.h5"), Path("test.h5")
    bad = tmp_path / "bad.h5"

    def relabel(value):
        def change(f):
            labels = f["labels"][()]
            labels[0] = value
            f["labels"][...] = labels

        return change

    if case == "support-label":
        sup, needle = _damage(sup, bad, relabel(len(CLASSES))), "label(s) outside 0..3"
    elif case == "query-label":
        test, needle = _damage(test, bad, relabel(9)), "label(s) outside 0..3 (e.g. 9)"
    elif case == "short-keys":
        test, needle = (
            _damage(test, bad, lambda f: f["keys"].resize(f["keys"].shape[0] - 1, axis=0)),
            "but 19 keys",
        )
    elif case == "text-rows":
        text, needle = (
            _damage(text, bad, lambda f: _set(f, "weights", f["weights"][()][:3])),
            "3 classifier row(s) for 4",
        )
    elif case == "other-support":

        def shuffle(f):  # the same images in another order: another file, another calibration's support set
            for name in ("features", "labels", "keys"):
                f[name][...] = f[name][()][::-1]

        sup, needle = _damage(sup, bad, shuffle), "calibrated on another support set"
    elif case == "query-nan":

        def nan(f):
            feats = f["features"][()]
            feats[2] = np.nan
            f["features"][...] = feats

        test, needle = _damage(test, bad, nan), "NaN"
    elif case == "query-model":

        def other(f):
            model = json.loads(f.attrs["model"])
            model["arch"] = "ViT-B-32"
            f.attrs["model"] = json.dumps(model)

        test, needle = _damage(test, bad, other), "embedded with"
    if case == "calibrate-val-label":
        val = _damage(Path("val.h5"), bad, relabel(-3))
        args = ["calibrate", "text.h5", "sup.h5", "--val", val, "-o", tmp_path / "c.json"]
        needle = "outside 0..3 (e.g. -3)"
    else:
        args = ["predict", text, test, "-s", sup, "--calibration", cal, "-o", tmp_path / "p.h5"]
    r = invoke(*args, expect=2)
    assert needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.h5").exists() and not (tmp_path / "c.json").exists()


def test_calibration_records_its_support_set(w, tmp_path):
    from susx_cli.artifacts import calibration as cal_io
    from susx_cli.artifacts import common

    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        tmp_path / "c.json",
        "--mode",
        "fixed",
        "--alpha",
        "1",
        "--beta",
        "1",
        "--gamma",
        "1",
    )
    made_on = cal_io.support_input(cal_io.read_calibration(tmp_path / "c.json"))
    assert made_on["role"] == "support" and made_on["sha256"] == common.sha256_file(w / "sup.h5")
