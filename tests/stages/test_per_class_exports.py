"""Per-class results, ECE / NLL, confusion, `susx export`, `susx report --long`,
and the paper-layout table's paper columns and means."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from susx_cli import metrics
from susx_cli.artifacts import hdf5
from susx_cli.datasets import registry
from tests.helpers import TINY, build_method_workspace, invoke, read_susx_csv, result_file

CLASSES = ["zebra", "apple", "mango", "kiwi"]


# ----------------------------------------------------------------------------------------- pure metrics


def test_per_class_recall_and_counts_equal_a_direct_computation():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 200)
    labels[labels == 4] = 5  # class 4 has no queries
    predicted = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 6, 200))
    recall = metrics.per_class_recall(predicted, labels, 6)
    for c in range(6):
        mine = labels == c
        if mine.any():
            assert recall[c] == pytest.approx(100.0 * np.sum(predicted[mine] == c) / np.sum(mine))
        else:
            assert math.isnan(recall[c])
    assert metrics.class_counts(labels, 6).tolist() == [int(np.sum(labels == c)) for c in range(6)]
    # mean of the per-class recalls is the recorded mean per-class recall
    top = metrics.topk_indices(np.eye(6)[predicted], 1)
    assert np.nanmean(recall) == pytest.approx(
        metrics.classification_metrics(top, labels, 6)["mean_per_class_recall"]
    )


def test_ece_and_nll_equal_direct_computations():
    # Two queries, hand-made: confidences 0.9 (correct) and 0.6 (wrong) fall in different bins of 15.
    logits = np.log(np.array([[0.9, 0.1], [0.6, 0.4]]))
    labels = np.array([0, 1])
    assert metrics.expected_calibration_error(logits, labels) == pytest.approx(100 * (0.5 * 0.1 + 0.5 * 0.6))
    assert metrics.negative_log_likelihood(logits, labels) == pytest.approx(
        -(math.log(0.9) + math.log(0.4)) / 2
    )
    # Random scaled logits: the textbook formulas written out with loops.
    rng = np.random.default_rng(1)
    logits = 100 * rng.normal(0, 0.05, (300, 7))
    labels = rng.integers(0, 7, 300)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    nll = -np.mean([math.log(probs[i, labels[i]]) for i in range(300)])
    assert metrics.negative_log_likelihood(logits, labels) == pytest.approx(nll)
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, 16)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = [i for i in range(300) if lo < conf[i] <= hi]
        if inside:
            acc = np.mean([pred[i] == labels[i] for i in inside])
            ece += len(inside) / 300 * abs(acc - np.mean(conf[inside]))
    assert metrics.expected_calibration_error(logits, labels) == pytest.approx(100 * ece)
    # large logits do not overflow
    assert np.isfinite(metrics.negative_log_likelihood(1e4 * logits, labels))


def test_confusion_matrix_and_top_confusions():
    rng = np.random.default_rng(2)
    labels, predicted = rng.integers(0, 8, 500), rng.integers(0, 8, 500)
    cm = metrics.confusion_matrix(predicted, labels, 8)
    assert cm.dtype == np.int64 and cm.sum() == 500
    for t in range(8):
        for p in range(8):
            assert cm[t, p] == np.sum((labels == t) & (predicted == p))
    top, counts = metrics.top_confusions(predicted, labels, 8, k=5)
    top_m, counts_m = metrics.top_confusions_from_matrix(cm, 5)
    assert (top == top_m).all() and (counts == counts_m).all()
    for t in range(8):  # each class's most frequent wrong predictions, by count then lower index
        wrong = sorted((-int(cm[t, p]), p) for p in range(8) if p != t and cm[t, p])[:5]
        assert [p for _, p in wrong] == [int(x) for x in top[t] if x >= 0]
        assert [-n for n, _ in wrong] == [int(n) for n in counts[t] if n > 0]
    # above the threshold only the top confusions are kept; padding where a class has fewer
    c = metrics.CONFUSION_MATRIX_MAX_CLASSES + 1
    labels = np.array([0, 0, 0, 1, 2])
    predicted = np.array([3, 3, 4, 1, 0])
    pc = metrics.per_class_results(predicted, labels, c, support_labels=np.array([0, 0, 1]))
    assert pc.confusion is None and pc.top_confused.shape == (c, 5)
    assert pc.top_confused[0].tolist() == [3, 4, -1, -1, -1] and pc.top_counts[0].tolist() == [2, 1, 0, 0, 0]
    assert pc.top_confused[1].tolist() == [-1] * 5 and pc.support[:3].tolist() == [2, 1, 0]
    assert pc.worst(3) == [0, 2, 1]


# ----------------------------------------------------------------------------------------- through the CLI


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """prompts, a 3-shot support set, text classifier, test features, a calibration and predictions."""
    root = build_method_workspace(tmp_path_factory.mktemp("perclass"), CLASSES, val=1, test=5)
    old = Path.cwd()
    os.chdir(root)
    try:
        invoke(
            "calibrate",
            "text.h5",
            "sup.h5",
            "-o",
            "cal.json",
            "--mode",
            "fixed",
            "--alpha",
            "1",
            "--beta",
            "2",
            "--gamma",
            "0.5",
        )
    finally:
        os.chdir(old)
    return root


@pytest.fixture()
def w(built, monkeypatch):
    monkeypatch.chdir(built)
    return built


def test_predict_records_per_class_results_and_prints_worst_classes(w):
    r = invoke(
        "predict",
        "text.h5",
        "test.h5",
        "-s",
        "sup.h5",
        "--calibration",
        "cal.json",
        "-o",
        "pred.h5",
        "--json",
        "--overwrite",
    )
    out = json.loads(r.stdout)
    assert set(out["metrics"]) >= {"top1", "mean_per_class_recall", "ece", "nll", "n"}
    p = hdf5.read_predictions(w / "pred.h5")
    feats = hdf5.read_features(w / "test.h5")
    assert (p.labels == feats.labels).all()
    pc = p.per_class
    for c in range(len(CLASSES)):
        mine = p.labels == c
        assert pc.recall[c] == pytest.approx(100.0 * np.mean(p.predicted[mine] == c))
    assert pc.queries.tolist() == [5] * 4 and pc.support.tolist() == [3] * 4
    assert pc.confusion.tolist() == [
        [int(np.sum((p.labels == t) & (p.predicted == q))) for q in range(4)] for t in range(4)
    ]
    assert 0 <= p.metrics["ece"] <= 100 and p.metrics["nll"] > 0
    assert np.nanmean(pc.recall) == pytest.approx(p.metrics["mean_per_class_recall"])
    worst = out["worst_classes"]
    assert [row["class"] for row in worst] == pc.worst(10) and len(worst) == 4
    assert [row["recall"] for row in worst] == sorted(row["recall"] for row in worst)
    assert worst[0]["name"] == CLASSES[worst[0]["class"]] and worst[0]["support"] == 3
    table = invoke(
        "predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "pred.h5"
    ).stderr
    assert "worst 4 classes by recall" in table and "ECE (%)" in table  # the skipped rerun prints them too
    # zero-shot: no support set, so no support counts
    invoke("predict", "text.h5", "test.h5", "-o", "zs.h5", "--overwrite")
    assert hdf5.read_predictions(w / "zs.h5").per_class.support is None


def _old_copy(w: Path, name: str) -> Path:
    """A copy of pred.h5 without the datasets this issue added (as an older susx wrote it)."""
    old = w / name
    shutil.copy(w / "pred.h5", old)
    with h5py.File(old, "a") as f:
        for ds in ("per_class_recall", "query_count", "support_count", "confusion"):
            del f[ds]
        del f.attrs["metric_descriptions"]
    return old


def test_old_predictions_files_still_read_and_export(w):
    invoke("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "pred.h5")
    old = _old_copy(w, "old.h5")
    p = hdf5.read_predictions(old)
    assert p.per_class is None and p.predicted.shape == (20,)
    bad = invoke("inspect", old, "--confusion", "c.png", expect=2)
    assert "older susx" in bad.stderr and not (w / "c.png").exists()
    invoke("export", old, "-o", "old.csv", "--overwrite")
    assert len(read_susx_csv(w / "old.csv", "susx.predictions_csv")) == 21


def test_export_round_trips_through_csv(w):
    invoke("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "pred.h5")
    (w / "preds.csv").unlink(missing_ok=True)
    r = invoke("export", "pred.h5", "-o", "preds.csv")
    assert r.stdout.strip() == "preds.csv"
    p = hdf5.read_predictions(w / "pred.h5")
    rows = read_susx_csv(w / "preds.csv", "susx.predictions_csv")
    head = ["key", "true", "predicted"] + [f"top{i}{s}" for i in range(1, 5) for s in ("", "_score")]
    assert rows[0] == head  # 4 classes: top-4
    assert len(rows) == 1 + len(p.keys)
    for row, key, label, pred, top, scores in zip(
        rows[1:], p.keys, p.labels, p.predicted, p.top5, p.scores, strict=True
    ):
        assert row[0] == key and "b'" not in "".join(row)
        assert row[1] == CLASSES[label] and row[2] == CLASSES[pred] and row[3] == row[2]
        assert row[3::2] == [CLASSES[c] for c in top]
        assert [np.float32(x) for x in row[4::2]] == list(scores)  # scores read back exactly
    before = (w / "preds.csv").read_bytes()
    again = json.loads(invoke("export", "pred.h5", "-o", "preds.csv", "--json").stdout)
    assert again["skipped"] and (w / "preds.csv").read_bytes() == before
    # another table of susx's needs --overwrite; a file susx did not write is never replaced
    other = before.decode().splitlines(keepends=True)[0] + "another table\n"
    (w / "preds.csv").write_text(other)
    bad = invoke("export", "pred.h5", "-o", "preds.csv", expect=2)
    assert "--overwrite" in bad.stderr and (w / "preds.csv").read_text() == other
    (w / "notes.csv").write_text("another table\n")
    bad = invoke("export", "pred.h5", "-o", "notes.csv", "--overwrite", expect=2)
    assert "not a file susx wrote" in bad.stderr and (w / "notes.csv").read_text() == "another table\n"
    invoke("export", "pred.h5", "-o", "pred.h5", "--overwrite", expect=2)
    out = json.loads(invoke("export", "pred.h5", "-o", "preds.csv", "--overwrite", "--json").stdout)
    assert out["summary"]["rows"] == 20 and out["outputs"] == ["preds.csv"]


def test_inspect_confusion_draws_a_png_and_prints_its_path_alone(w, monkeypatch):
    pytest.importorskip("matplotlib")
    invoke("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "pred.h5")
    r = invoke("inspect", "pred.h5", "--confusion", "confusion.png")
    assert r.stdout.strip() == "confusion.png"
    assert (w / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    invoke("inspect", "text.h5", "--confusion", "x.png", expect=2)
    # many classes: top confusions only, drawn as bars
    c = metrics.CONFUSION_MATRIX_MAX_CLASSES + 20
    rng = np.random.default_rng(3)
    labels, predicted = rng.integers(0, c, 400), rng.integers(0, c, 400)
    big = hdf5.Predictions(
        predicted=predicted,
        top5=predicted[:, None],
        scores=np.zeros((400, 1), np.float32),
        labels=labels,
        keys=[f"q{i}" for i in range(400)],
        classes=[f"class {i}" for i in range(c)],
        method="zero-shot",
        metrics={},
        provenance={"options": {}, "inputs": []},
        per_class=metrics.per_class_results(predicted, labels, c),
    )
    hdf5.write_predictions(w / "big.h5", big)
    back = hdf5.read_predictions(w / "big.h5").per_class
    assert back.confusion is None and (back.top_confused == big.per_class.top_confused).all()
    assert invoke("inspect", "big.h5", "--confusion", "big.png").stdout.strip() == "big.png"
    assert (w / "big.png").read_bytes()[:4] == b"\x89PNG"
    # without the plots extra: the error names it
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    bad = invoke("inspect", "pred.h5", "--confusion", "c2.png", expect=2)
    assert "pip install 'susx[plots]'" in bad.stderr


# ----------------------------------------------------------------------------------------- eval results, report


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from tests.stages.test_eval import SMALL_GRID, make_cars_root

    base = tmp_path_factory.mktemp("perclass-eval")
    data = make_cars_root(base / "data")
    invoke(
        "eval",
        "--dataset",
        "stanford_cars",
        "--data-root",
        data,
        "--model",
        f"{TINY[1]}:{TINY[3]}",
        "--support",
        "folder-shots:2",
        "--method",
        "zero-shot",
        "--method",
        "tip-x",
        "--calibration",
        "loo",
        "--work-dir",
        base / "work",
        "--results-dir",
        base / "results",
        "--workers",
        "0",
        *SMALL_GRID,
    )
    return base


def test_eval_results_carry_per_class_results(evaluated):
    res = json.loads(
        result_file(
            evaluated / "results", "stanford_cars__susx_tiny_vit-none__tip-x__2shot-seed0__loo"
        ).read_text()
    )
    pc = res["per_class"]
    preds = hdf5.read_predictions(res["artifacts"]["predictions"])
    assert pc["classes"] == preds.classes and pc["queries"] == [3, 3, 3] and pc["support"] == [2, 2, 2]
    assert pc["recall"] == pytest.approx(list(preds.per_class.recall))
    assert pc["confusion"] == preds.per_class.confusion.tolist()
    assert {"ece", "nll"} <= set(res["metrics"]) and "temperature is the method's own" in res[
        "metric_descriptions"
    ]["ece"]
    zs = json.loads(
        result_file(
            evaluated / "results", "stanford_cars__susx_tiny_vit-none__zero-shot__none__none"
        ).read_text()
    )
    assert zs["per_class"]["support"] is None


def test_report_long_has_one_row_per_run_with_flattened_fields(evaluated, tmp_path):
    files = sorted((evaluated / "results").glob("*.json"))
    r = invoke("report", evaluated / "results", "--long", tmp_path / "long.csv", "-o", tmp_path / "r.md")
    assert str(tmp_path / "long.csv") in r.stdout
    table = read_susx_csv(tmp_path / "long.csv", "susx.report_long_csv")
    rows = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    assert len(rows) == len(files) == 2
    by_method = {row["method"]: row for row in rows}
    tipx = json.loads(
        result_file(
            evaluated / "results", "stanford_cars__susx_tiny_vit-none__tip-x__2shot-seed0__loo"
        ).read_text()
    )
    row = by_method["tip-x"]
    assert float(row["calibration.hyperparameters.alpha"]) == tipx["calibration"]["hyperparameters"]["alpha"]
    assert (
        float(row["metrics.top1"]) == tipx["metrics"]["top1"]
        and float(row["metrics.ece"]) == tipx["metrics"]["ece"]
    )
    assert row["config.calibration.mode"] == "loo" and row["config.support.shots"] == "2"
    assert row["dataset.id"] == "stanford_cars" and row["model.random_weights"] == "True"
    assert "tip-x__2shot-seed0__loo-" in row["result"]
    assert (
        by_method["zero-shot"]["calibration.hyperparameters.alpha"] == ""
    )  # no calibration: empty, not "None"
    assert not any(k.startswith("per_class") for k in row)
    assert "support" not in row and "calibration" not in row  # null in zero-shot runs: only dotted columns
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(tmp_path / "long.csv", skiprows=1)  # the first line marks it as susx's
    assert len(frame) == 2 and frame["metrics.top1"].dtype.kind == "f"


def _result_as(src: Path, dataset: str, dest: Path) -> Path:
    data = json.loads(src.read_text())
    data["dataset"]["id"] = dataset
    dest.write_text(json.dumps(data))
    return dest


def test_paper_figures_stand_beside_ours_and_means_never_mix_dataset_sets(evaluated, tmp_path):
    zs = result_file(evaluated / "results", "stanford_cars__susx_tiny_vit-none__zero-shot__none__none")
    tipx = result_file(evaluated / "results", "stanford_cars__susx_tiny_vit-none__tip-x__2shot-seed0__loo")
    only_in = tmp_path / "imagenet"
    only_in.mkdir()
    _result_as(zs, "imagenet", only_in / "zs.json")
    invoke("report", only_in, "-f", "csv", "-o", tmp_path / "a.csv")
    rows = read_susx_csv(tmp_path / "a.csv", "susx.report_csv")
    ours = ["imagenet", "imagenet_std", "imagenet_n", "imagenet_failed"]
    assert rows[0][5:] == [*ours, "imagenet_paper", "mean", "mean_paper", "group"]
    assert rows[1][9] == "60.3200" and rows[1][11] == "60.3200"  # the paper's mean over the same one dataset
    # ImageNet + Stanford Cars: the zero-shot row's paper has no Stanford Cars figure and its mean is over 11
    # datasets, so it has no paper mean (its mean is named in a note); TIP-X 2-shot has both figures, so
    # its paper mean is theirs.
    _result_as(tipx, "imagenet", only_in / "tipx.json")
    shutil.copy(zs, only_in / "zs-cars.json")
    md = invoke("report", only_in).stdout
    invoke("report", only_in, "-f", "csv", "-o", tmp_path / "b.csv")
    rows = read_susx_csv(tmp_path / "b.csv", "susx.report_csv")
    cars = ["stanford_cars", "stanford_cars_std", "stanford_cars_n", "stanford_cars_failed"]
    assert rows[0][5:] == [
        *ours,
        "imagenet_paper",
        *cars,
        "stanford_cars_paper",
        "mean",
        "mean_paper",
        "group",
    ]
    zero = next(r for r in rows if r[1] == "Zero-shot CLIP")
    assert zero[9] == "60.3200" and zero[14] == "" and zero[15] != "" and zero[16] == ""
    tip = next(r for r in rows if r[1].startswith("TIP-X"))
    assert tip[10] == "" and tip[15] == ""  # no Stanford Cars result: no mean of ours
    paper = registry.PAPER_NUMBERS["tip-x-2shot"]
    assert float(tip[16]) == pytest.approx((paper["imagenet"] + paper["stanford_cars"]) / 2, abs=1e-4)
    assert "58.53" in md and "58.53" not in (tmp_path / "b.csv").read_text()
    assert "| ImageNet | ImageNet (paper) | Stanford Cars | Stanford Cars (paper) |" in md
    assert "APE" in md and "DMN" in md  # each paper row's source is named
    assert "they have no mean" in md
