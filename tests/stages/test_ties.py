"""Exact ties between class logits go to the lower class index: in the ranking, every metric, predict's
top-5 and the exported table."""

from __future__ import annotations

import numpy as np
import pytest

from susx_cli import metrics
from susx_cli.artifacts import hdf5
from tests.helpers import build_method_workspace, invoke, read_susx_csv

CLASSES = ["zebra", "apple", "mango", "kiwi", "plum", "fig"]


def test_topk_ranks_exact_ties_by_the_lower_index():
    logits = np.array(
        [
            [1.0, 3.0, 3.0, 0.0, 3.0, 2.0],  # three-way tie at the top
            [5.0, 5.0, 5.0, 5.0, 5.0, 5.0],  # all equal
            [0.0, -0.0, 2.0, 1.0, 0.0, 1.0],  # ties below the top; -0.0 equals 0.0
            [2.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # a five-way tie straddling k
        ]
    )
    assert metrics.topk_indices(logits, 5).tolist() == [
        [1, 2, 4, 5, 0],
        [0, 1, 2, 3, 4],
        [2, 3, 5, 0, 1],
        [0, 1, 2, 3, 4],
    ]
    assert metrics.topk_indices(logits.astype(np.float32), 1)[:, 0].tolist() == [1, 0, 2, 0]
    assert metrics.topk_indices(logits, 10).shape == (4, 6)  # k capped at the number of classes


def test_every_metric_counts_a_tie_for_the_lower_index():
    logits = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    lower, higher = np.array([0, 1]), np.array([1, 2])
    top = metrics.topk_indices(logits, 2)
    assert metrics.classification_metrics(top, lower, 3)["top1"] == 100.0
    assert metrics.classification_metrics(top, higher, 3)["top1"] == 0.0
    assert metrics.per_class_results(top[:, 0], higher, 3).confusion[1, 0] == 1
    # ECE: both queries have confidence e / (2e + 1), one bin, so ECE = |accuracy - confidence|.
    conf = np.e / (2 * np.e + 1)
    assert metrics.expected_calibration_error(logits, lower) == pytest.approx(100 * (1 - conf))
    assert metrics.expected_calibration_error(logits, higher) == pytest.approx(100 * conf)
    # Logits 1e-17 apart round to equal probabilities: the prediction is still the larger logit's class.
    apart = np.array([[0.0, 1e-17, -1.0]])
    assert np.exp(metrics.log_softmax(apart))[0, 0] == np.exp(metrics.log_softmax(apart))[0, 1]
    assert metrics.topk_indices(apart, 1)[0, 0] == 1
    assert metrics.expected_calibration_error(apart, np.array([1])) == pytest.approx(100 * (1 - conf))


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    """A workspace whose text classifier gives classes 1, 3, 4 one weight row and 0, 2, 5 another: unit
    basis vectors e_a and e_b, so every logit of a group is the same product, exactly. (a, b) are the
    first two feature dimensions on which some test queries prefer one group and some the other."""
    root = build_method_workspace(tmp_path_factory.mktemp("ties"), CLASSES, shots=1, val=1, test=3)
    query = hdf5.read_features(root / "test.h5").features
    a, b = next(
        (a, b)
        for a in range(query.shape[1])
        for b in range(a + 1, query.shape[1])
        if (query[:, a] > query[:, b]).any() and (query[:, a] < query[:, b]).any()
    )
    text = hdf5.read_text_classifier(root / "text.h5")
    weights = np.zeros_like(text.weights)
    weights[[1, 3, 4], a] = 1.0
    weights[[0, 2, 5], b] = 1.0
    text.weights = weights
    hdf5.write_text_classifier(root / "tied.h5", text)
    return root, a, b


def test_predict_and_export_rank_exact_ties_by_the_lower_index(tied, monkeypatch):
    tied, a, b = tied
    monkeypatch.chdir(tied)
    invoke("predict", "tied.h5", "test.h5", "-o", "pred.h5", "--method", "zero-shot")
    invoke("export", "pred.h5", "-o", "pred.csv")
    preds = hdf5.read_predictions(tied / "pred.h5")
    query = hdf5.read_features(tied / "test.h5").features
    first = query[:, a] > query[:, b]  # whether the group of class 1 scores higher
    assert not (query[:, a] == query[:, b]).any()
    expected = np.where(first[:, None], [1, 3, 4, 0, 2], [0, 2, 5, 1, 3])
    assert preds.top5.tolist() == expected.tolist()
    assert preds.predicted.tolist() == expected[:, 0].tolist()
    assert (preds.scores[:, 0] == preds.scores[:, 1]).all() and (
        preds.scores[:, 1] == preds.scores[:, 2]
    ).all()
    labels = preds.labels
    assert preds.metrics["top1"] == pytest.approx(100 * np.mean(expected[:, 0] == labels))
    header, *body = read_susx_csv(tied / "pred.csv")
    rows = [dict(zip(header, row, strict=True)) for row in body]
    assert [[r[f"top{i}"] for i in range(1, 6)] for r in rows] == [[CLASSES[c] for c in e] for e in expected]
    assert [r["predicted"] for r in rows] == [CLASSES[c] for c in expected[:, 0]]
