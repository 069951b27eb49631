"""GDA in calibrate / predict / eval / report, and name-only k-fold calibration."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from susx_cli.artifacts import hdf5
from tests.helpers import TINY, build_method_workspace, invoke, make_class_folders

CLASSES = ["zebra", "apple", "mango", "kiwi"]
TIPX_GRID = ["--alpha-grid", "1,10", "--beta-grid", "1,5", "--gamma-grid", "0.1,2"]
PAPER_GRID = [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """prompts, a 3-shot support set, text classifier, support/val/test features (tiny random model)."""
    return build_method_workspace(tmp_path_factory.mktemp("gda"), CLASSES)


@pytest.fixture()
def w(built, monkeypatch):
    monkeypatch.chdir(built)
    return built


def _copy(src: Path, dst: Path, change) -> Path:
    """A copy of an HDF5 artifact with ``change(f)`` applied in place."""
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        change(f)
    return dst


def _keep_rows(keep):
    def change(f):
        mask = keep(f["labels"][()])
        for name in ("features", "labels", "keys"):
            data = f[name][()][mask]
            del f[name]
            f.create_dataset(name, data=data, maxshape=(None, *data.shape[1:]))

    return change


def _first_of_each(y: np.ndarray) -> np.ndarray:
    """Indices of each class's first support image: one image per class."""
    return np.unique(y, return_index=True)[1]


def _unlabel(f):
    f["labels"][...] = -1


def _content(path: Path) -> dict:
    """A calibration file without what differs between otherwise identical runs (creation time, search time)."""
    data = json.loads(path.read_text())
    data["objective"].pop("search_seconds")
    return {k: v for k, v in data.items() if k not in ("created", "tool")}


def test_gda_val_records_alpha_and_provenance_and_predict_reproduces_it(w):
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "g-val.json",
        "--method",
        "gda",
        "--val",
        "val.h5",
        "--overwrite",
    )
    cal = json.loads((w / "g-val.json").read_text())
    assert cal["method"] == "gda" and cal["mode"] == "val"
    assert set(cal["hyperparameters"]) == {"alpha"} and cal["hyperparameters"]["alpha"] in PAPER_GRID
    assert cal["grid"] == {"alpha": PAPER_GRID, "size": 7}
    assert cal["objective"]["queries"] == 16 and 0 <= cal["objective"]["value"] <= 1
    gda = cal["method_record"]
    assert gda["estimator"] == "shrinkage-pinv" and "pinv" in gda["formula"] and gda["support_size"] == 12
    assert gda["support"]["sha256"] == hashlib.sha256((w / "sup.h5").read_bytes()).hexdigest()
    # predict re-fits the head from the same support set and reproduces the recorded objective
    invoke(
        "predict",
        "text.h5",
        "val.h5",
        "-s",
        "sup.h5",
        "--calibration",
        "g-val.json",
        "-o",
        "gv.h5",
        "--overwrite",
    )
    preds = hdf5.read_predictions(w / "gv.h5")
    assert preds.method == "gda" and preds.metrics["hyperparameters"] == {
        "alpha": cal["hyperparameters"]["alpha"]
    }
    assert abs(preds.metrics["top1"] - 100 * cal["objective"]["value"]) < 1e-6


def test_gda_val_keeps_the_first_maximum(w):
    """With every alpha tied (one grid value repeated), the first one is kept."""
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "g-tie.json",
        "--method",
        "gda",
        "--val",
        "val.h5",
        "--gda-alpha-grid",
        "1e-9,2e-9",
        "--overwrite",
    )
    assert json.loads((w / "g-tie.json").read_text())["hyperparameters"]["alpha"] == 1e-9


def test_gda_fixed_and_predict_is_deterministic(w):
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "g-fx.json",
        "--method",
        "gda",
        "--mode",
        "fixed",
        "--gda-alpha",
        "10",
        "--overwrite",
    )
    cal = json.loads((w / "g-fx.json").read_text())
    assert cal["hyperparameters"] == {"alpha": 10.0} and cal["objective"] is None and cal["grid"] is None
    assert cal["method_record"]["support"]["sha256"]
    for out in ("g1.h5", "g2.h5"):
        invoke(
            "predict",
            "text.h5",
            "test.h5",
            "-s",
            "sup.h5",
            "--calibration",
            "g-fx.json",
            "-o",
            out,
            "--overwrite",
        )
    a, b = hdf5.read_predictions(w / "g1.h5"), hdf5.read_predictions(w / "g2.h5")
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.top5, b.top5)
    # GDA's term moves the predictions away from zero-shot's at a large alpha
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "g-big.json",
        "--method",
        "gda",
        "--mode",
        "fixed",
        "--gda-alpha",
        "1e6",
        "--overwrite",
    )
    invoke(
        "predict",
        "text.h5",
        "test.h5",
        "-s",
        "sup.h5",
        "--calibration",
        "g-big.json",
        "-o",
        "g3.h5",
        "--overwrite",
    )
    invoke("predict", "text.h5", "test.h5", "--method", "zero-shot", "-o", "zs.h5", "--overwrite")
    assert not np.allclose(
        hdf5.read_predictions(w / "g3.h5").scores, hdf5.read_predictions(w / "zs.h5").scores
    )


@pytest.mark.parametrize("method", ["gda", "tip-x", "tip-adapter"])
def test_kfold_reads_no_target_labels(w, method, tmp_path):
    """kfold refuses --val (labelled or not): it chooses on the support set alone, twice the same."""
    grid = [] if method == "gda" else TIPX_GRID[: 4 if method == "tip-adapter" else 6]
    unlabelled = _copy(w / "val.h5", tmp_path / "val-unlabelled.h5", _unlabel)
    base = ["calibrate", "text.h5", "sup.h5", "--method", method, "--mode", "kfold", *grid]
    for val in (unlabelled, w / "val.h5"):
        r = invoke(*base, "-o", tmp_path / "refused.json", "--val", val, expect=2)
        assert "--val does nothing" in r.stderr and not (tmp_path / "refused.json").exists()
    outs = []
    for i in range(2):
        invoke(*base, "-o", tmp_path / f"k{i}.json")
        outs.append(_content(tmp_path / f"k{i}.json"))
    assert outs[0] == outs[1]
    cal = outs[0]
    assert cal["mode"] == "kfold" and cal["objective"]["queries"] == 12 and "4-fold" in cal["objective"]["on"]
    folds = cal["folds"]
    assert folds["k"] == 4 and folds["seed"] == 0 and sum(folds["sizes"]) == 12 and len(folds["fold"]) == 12
    assert max(folds["sizes"]) - min(folds["sizes"]) <= 1 and len(folds["fold_sha256"]) == 64
    # another seed is another split, and is recorded
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        tmp_path / "s1.json",
        "--method",
        method,
        "--mode",
        "kfold",
        "--folds",
        "3",
        "--fold-seed",
        "1",
        *grid,
    )
    other = json.loads((tmp_path / "s1.json").read_text())["folds"]
    assert other["k"] == 3 and other["seed"] == 1 and other["fold"] != folds["fold"]


def test_gda_refuses_loo_and_tipx_options(w, tmp_path):
    r = invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        tmp_path / "c.json",
        "--method",
        "gda",
        "--mode",
        "loo",
        expect=2,
    )
    assert "no --mode loo" in r.stderr and "kfold" in r.stderr
    r = invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        tmp_path / "c.json",
        "--method",
        "gda",
        "--mode",
        "fixed",
        "--gda-alpha",
        "1",
        "--beta",
        "2",
        expect=2,
    )
    assert "--beta does not apply to --method gda" in r.stderr and "--gda-alpha" in r.stderr
    r = invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        tmp_path / "c.json",
        "--method",
        "gda",
        "--mode",
        "fixed",
        expect=2,
    )
    assert "--gda-alpha" in r.stderr
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("case", ["no-image", "no-covariance", "nan", "one-per-class-kfold"])
def test_gda_bad_support_is_one_line(w, case, tmp_path):
    change, mode, needle = {
        "no-image": (_keep_rows(lambda y: y != 2), "fixed", "no support images: 'mango'"),
        "no-covariance": (_keep_rows(_first_of_each), "fixed", "more support images than classes"),
        "nan": (lambda f: f["features"].__setitem__((0, 0), np.nan), "fixed", "NaN"),
        "one-per-class-kfold": (
            _keep_rows(lambda y: (y != 3) | np.isin(np.arange(len(y)), _first_of_each(y))),
            "kfold",
            "at least 2 support images",
        ),
    }[case]
    bad = _copy(w / "sup.h5", tmp_path / "bad.h5", change)
    fixed = ["--gda-alpha", "1"] if mode == "fixed" else []
    r = invoke(
        "calibrate",
        "text.h5",
        bad,
        "-o",
        tmp_path / "c.json",
        "--method",
        "gda",
        "--mode",
        mode,
        *fixed,
        expect=2,
    )
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "c.json").exists()


def test_calibration_for_another_method_is_an_error_with_gda(w, tmp_path):
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "g-fx2.json",
        "--method",
        "gda",
        "--mode",
        "fixed",
        "--gda-alpha",
        "1",
        "--overwrite",
    )
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "t-fx.json",
        "--mode",
        "fixed",
        "--alpha",
        "1",
        "--beta",
        "1",
        "--gamma",
        "1",
        "--overwrite",
    )
    r = invoke(
        "predict",
        "text.h5",
        "test.h5",
        "-s",
        "sup.h5",
        "--calibration",
        "g-fx2.json",
        "--method",
        "tip-x",
        "-o",
        tmp_path / "p.h5",
        expect=2,
    )
    assert "made for gda, not tip-x" in r.stderr and "--method" in r.stderr
    r = invoke(
        "predict",
        "text.h5",
        "test.h5",
        "-s",
        "sup.h5",
        "--calibration",
        "t-fx.json",
        "--method",
        "gda",
        "-o",
        tmp_path / "p.h5",
        expect=2,
    )
    assert "made for tip-x, not gda" in r.stderr
    assert not (tmp_path / "p.h5").exists()
    # Tip-Adapter with a TIP-X calibration keeps today's warning
    r = invoke(
        "predict",
        "text.h5",
        "test.h5",
        "-s",
        "sup.h5",
        "--calibration",
        "t-fx.json",
        "--method",
        "tip-adapter",
        "-o",
        tmp_path / "p.h5",
    )
    assert "calibration was made for tip-x" in r.stderr


def _eurosat(data_root: Path) -> Path:
    folder = data_root / "eurosat"
    make_class_folders(folder / "2750", CLASSES[:3], 9)
    rows = {s: [] for s in ("train", "val", "test")}
    for ci, name in enumerate(CLASSES[:3]):
        for j in range(9):
            rows[("train", "val", "test")[j % 3]].append([f"{name}/img_{j:03d}.png", ci, name])
    (folder / "split_zhou_EuroSAT.json").write_text(json.dumps(rows))
    return data_root


def test_eval_runs_gda_with_val_kfold_fixed_and_report_lists_it(tmp_path):
    data = _eurosat(tmp_path / "data")
    common = [
        "--dataset",
        "eurosat",
        "--data-root",
        data,
        "--model",
        f"{TINY[1]}:{TINY[3]}",
        "--support",
        "folder-shots:2",
        "--work-dir",
        tmp_path / "work",
        "--results-dir",
        tmp_path / "res",
        "--workers",
        "0",
    ]
    # gda has no loo: alone it is refused; beside kfold it is skipped; fixed needs --gda-alpha
    r = invoke("eval", *common, "--method", "gda", "--calibration", "loo", expect=2)
    assert "gda has none of the calibration modes loo" in r.stderr
    r = invoke("eval", *common, "--method", "gda", "--calibration", "fixed", expect=2)
    assert "--gda-alpha" in r.stderr
    out = json.loads(
        invoke(
            "eval",
            *common,
            "--method",
            "gda",
            "--calibration",
            "loo",
            "--calibration",
            "val",
            "--calibration",
            "kfold",
            "--calibration",
            "fixed",
            "--gda-alpha",
            "1",
            "--json",
        ).stdout
    )
    modes = sorted(row["calibration"] for row in out["results"])
    assert modes == ["fixed", "kfold", "val"] and {row["method"] for row in out["results"]} == {"gda"}
    res = json.loads(next((tmp_path / "res").glob("*gda*kfold*.json")).read_text())
    assert res["calibration"]["mode"] == "kfold" and res["calibration"]["objective"]["queries"] == 6
    cal = json.loads(Path(res["artifacts"]["calibration"]).read_text())
    assert cal["method"] == "gda" and cal["folds"]["k"] == 4 and cal["grid"]["alpha"] == PAPER_GRID
    fixed = json.loads(next((tmp_path / "res").glob("*gda*fixed*.json")).read_text())
    assert fixed["calibration"]["hyperparameters"]["alpha"] == 1.0
    rep = invoke("report", tmp_path / "res", "-o", tmp_path / "r.md")
    table = (tmp_path / "r.md").read_text()
    assert "GDA (2-shot)" in table and "kfold" in table and rep.exit_code == 0
