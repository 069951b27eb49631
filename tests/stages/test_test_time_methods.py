"""The test-time methods through the registry and every stage: predict (stream orders, presets, several
seeds), eval (order seeds, baselines beside them) and report (their own group)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from susx_cli.artifacts import hdf5
from susx_cli.method import registry
from susx_cli.method import tda as tda_math
from susx_cli.method.dmn import dmn_scores
from tests.helpers import TINY, build_method_workspace, invoke, read_susx_csv

CLASSES = ["zebra", "apple", "mango", "kiwi"]
TEST_TIME = ("tda", "tda-transductive", "dmn-zs", "tip-adapter+tda", "tip-x+tda")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    return build_method_workspace(tmp_path_factory.mktemp("test-time"), CLASSES, test=6)


def _arrays(ws: Path):
    """(W (C, D), queries (n, D)) float64 as predict reads them."""
    text, query = hdf5.read_text_classifier(ws / "text.h5"), hdf5.read_features(ws / "test.h5")
    as64 = lambda x: torch.from_numpy(x).to(torch.float64)  # noqa: E731
    return as64(text.weights), as64(query.features)


def _predict(ws: Path, out: str, *args: str, expect: int = 0):
    return invoke("predict", ws / "text.h5", ws / "test.h5", "-o", ws / out, *args, "--json", expect=expect)


def test_the_test_time_methods_are_registered_in_their_group():
    for name in TEST_TIME:
        spec = registry.get(name)
        assert spec.group == "test-time" and spec.baseline in registry.names()
    assert registry.get("dmn-zs").label == "DMN-ZS (single view, gamma=1)"
    assert [registry.get(n).online for n in TEST_TIME] == [True, False, True, True, True]
    assert registry.get("tip-x+tda").modes == registry.get("tip-x").modes
    assert registry.get("tda").stream_values() == {"tda_alpha": 2.0, "tda_beta": 5.0}
    assert registry.get("dmn-zs").stream_values() == {"dmn_gamma": 1.0}


def test_tda_predicts_without_support_over_a_stored_reproducible_order(ws):
    out = json.loads(_predict(ws, "tda.h5", "--method", "tda", "--order-seeds", "3,1").stdout)
    got = hdf5.read_predictions(ws / "tda.h5")
    n = len(got.keys)
    assert sorted(got.order.tolist()) == list(range(n)) and got.order_seed == 3
    assert np.array_equal(got.order, tda_math.stream_order(n, 3).numpy())
    assert not np.array_equal(got.order, np.arange(n))  # a permutation, not the grouped file order
    W, q = _arrays(ws)
    expected = tda_math.tda_logits(q, W, torch.from_numpy(got.order), tda_math.TdaParams())
    assert np.array_equal(got.predicted, expected.argmax(1).numpy())
    assert np.allclose(got.scores[:, 0], expected.max(1).values.numpy(), atol=1e-4)
    assert got.metrics["order_seeds"] == [3, 1] and got.metrics["tda_preset"] == "default"
    assert got.metrics["hyperparameters"] == {"tda_alpha": 2.0, "tda_beta": 5.0}
    seeds = [m["seed"] for m in got.metrics["order_seed_metrics"]]
    top1 = [m["top1"] for m in got.metrics["order_seed_metrics"]]
    assert seeds == [3, 1] and got.metrics["top1"] == top1[0]
    assert out["over_order_seeds"]["top1"]["mean"] == pytest.approx(np.mean(top1))
    assert out["over_order_seeds"]["top1"]["std"] == pytest.approx(np.std(top1, ddof=1))
    again = _predict(ws, "tda-again.h5", "--method", "tda", "--order-seed", "3")
    assert json.loads(again.stdout)["metrics"]["top1"] == top1[0]
    assert np.array_equal(hdf5.read_predictions(ws / "tda-again.h5").order, got.order)


def test_file_order_predictions_equal_the_math_on_the_same_features(ws):
    _predict(ws, "tda-file.h5", "--method", "tda", "--order", "file")
    got = hdf5.read_predictions(ws / "tda-file.h5")
    W, q = _arrays(ws)
    n = q.shape[0]
    assert got.order_seed is None and np.array_equal(got.order, np.arange(n))
    assert got.metrics["order"].startswith("file")
    expected = tda_math.tda_logits_sequential(q, W, torch.arange(n))
    assert np.array_equal(got.predicted, expected.argmax(1).numpy())
    _predict(ws, "dmn.h5", "--method", "dmn-zs", "--order", "file")
    dmn = hdf5.read_predictions(ws / "dmn.h5")
    assert np.array_equal(dmn.predicted, dmn_scores(q, W, torch.arange(n)).argmax(1).numpy())
    _predict(ws, "trans.h5", "--method", "tda-transductive")
    trans = hdf5.read_predictions(ws / "trans.h5")
    assert trans.order is None and "order" not in trans.metrics
    assert np.array_equal(trans.predicted, tda_math.tda_transductive_logits(q, W).argmax(1).numpy())


def test_the_paper_preset_is_recorded(ws):
    _predict(ws, "tda-paper.h5", "--method", "tda", "--tda-preset", "paper", "--dataset", "dtd")
    got = hdf5.read_predictions(ws / "tda-paper.h5")
    assert got.metrics["tda_preset"] == "paper"
    assert got.metrics["hyperparameters"] == {"tda_alpha": 2.0, "tda_beta": 3.0}  # DTD's in PAPER_ALPHA_BETA
    assert got.provenance["options"]["stream"] == {"tda_alpha": 2.0, "tda_beta": 3.0}


def test_zero_weights_give_the_static_predictions(ws):
    """alpha+ = alpha- = 0: TDA's logits are the zero-shot logits and TIP-X + TDA's are TIP-X's; DMN with
    gamma 0 predicts as zero-shot."""
    W, q = _arrays(ws)
    zero_shot = registry.get("zero-shot")
    base = zero_shot.logits(zero_shot.fit(W, None, {}), q)
    for name in ("tda", "tda-transductive"):
        spec = registry.get(name)
        state = spec.fit(W, None, spec.stream_values())
        state = dataclasses.replace(state, params=dataclasses.replace(state.params, alpha_pos=0, alpha_neg=0))
        assert torch.equal(spec.logits(state, q), base)
    dmn = registry.get("dmn-zs")
    assert torch.equal(dmn.logits(dmn.fit(W, None, {"dmn_gamma": 0.0}), q).argmax(1), base.argmax(1))
    sup = hdf5.read_features(ws / "sup.h5")
    support = registry.Support(torch.from_numpy(sup.features).double(), torch.from_numpy(sup.labels))
    values = {"alpha": 1.0, "beta": 2.0, "gamma": 0.5}
    tipx = registry.get("tip-x")
    combined = registry.get("tip-x+tda")
    state = combined.fit(W, support, {**values, "tda_alpha": 0.0}, logit_scale=100.0, tau=0.5)
    state = dataclasses.replace(state, params=dataclasses.replace(state.params, alpha_neg=0))
    expected = tipx.logits(tipx.fit(W, support, values, logit_scale=100.0, tau=0.5), q)
    assert torch.allclose(combined.logits(state, q), expected, rtol=0, atol=1e-12)


def test_one_class_gives_a_correct_result():
    """One class: every query is that class; the logits stay finite (no negative cache: h/log2(1) is NaN)."""
    gen = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(7, 8, generator=gen, dtype=torch.float64), dim=1)
    W = q[:1].clone()
    for name in ("tda", "tda-transductive", "dmn-zs"):
        spec = registry.get(name)
        logits = spec.logits(spec.fit(W, None, spec.stream_values()), q)
        assert logits.shape == (7, 1) and torch.isfinite(logits).all()


def test_tip_x_tda_calibrates_as_tip_x_and_adds_the_stream(ws):
    invoke(
        "calibrate", ws / "text.h5", ws / "sup.h5", "-o", ws / "cal.json", "--method", "tip-x+tda",
        "--mode", "loo", "--alpha-grid", "0.5,2", "--beta-grid", "1,5", "--gamma-grid", "0.1,1",
    )  # fmt: skip
    cal = json.loads((ws / "cal.json").read_text())
    assert cal["method"] == "tip-x+tda" and set(cal["hyperparameters"]) == {"alpha", "beta", "gamma"}
    _predict(
        ws, "tipx-tda.h5", "-s", str(ws / "sup.h5"), "--calibration", str(ws / "cal.json"), "--order", "file"
    )
    got = hdf5.read_predictions(ws / "tipx-tda.h5")
    W, q = _arrays(ws)
    sup = hdf5.read_features(ws / "sup.h5")
    support = registry.Support(torch.from_numpy(sup.features).double(), torch.from_numpy(sup.labels))
    tipx = registry.get("tip-x")
    base = tipx.logits(tipx.fit(W, support, cal["hyperparameters"], logit_scale=100.0, **cal["settings"]), q)
    expected = tda_math.add_tda_terms(base, q, W, torch.arange(q.shape[0]), tda_math.TdaParams())
    assert got.method == "tip-x+tda"
    assert np.array_equal(got.predicted, expected.argmax(1).numpy())


def test_eval_runs_each_order_seed_and_report_keeps_the_test_time_group_apart(tmp_path):
    from tests.stages.test_eval import SMALL_GRID, make_cars_root

    data = make_cars_root(tmp_path / "data")
    methods = [a for m in ("tda", "tda-transductive", "dmn-zs", "tip-x+tda") for a in ("--method", m)]
    out = invoke(
        "eval", "--dataset", "stanford_cars", "--data-root", data, "--model", f"{TINY[1]}:{TINY[3]}",
        "--support", "folder-shots:2", "--calibration", "loo", *methods, "--order-seeds", "0,1",
        "--work-dir", tmp_path / "work", "--results-dir", tmp_path / "results", "--workers", "0",
        "--augment-passes", "1", *SMALL_GRID, "--json",
    )  # fmt: skip
    rows = {r["method"]: r for r in json.loads(out.stdout)["results"]}
    # the baselines (zero-shot, TIP-X) run beside the test-time methods without being asked
    assert set(rows) == {"tda", "tda-transductive", "dmn-zs", "tip-x+tda", "zero-shot", "tip-x"}
    assert all(r["status"] == "done" for r in rows.values())
    tda_result = json.loads(Path(rows["tda"]["path"]).read_text())
    assert tda_result["config"]["stream"]["seeds"] == [0, 1]
    per_seed = [m["top1"] for m in tda_result["stream"]["order_seed_metrics"]]
    assert tda_result["metrics"]["top1"] == pytest.approx(np.mean(per_seed))
    for order_free in ("zero-shot", "tda-transductive"):  # no order: nothing of the stream in the config
        assert "stream" not in json.loads(Path(rows[order_free]["path"]).read_text())["config"]

    invoke("report", tmp_path / "results", "-o", tmp_path / "r.md")
    invoke("report", tmp_path / "results", "-f", "csv", "-o", tmp_path / "r.csv")
    md = (tmp_path / "r.md").read_text()
    name_only, _, test_time = md.partition("## test-time: uses the unlabelled test stream")
    assert test_time, md
    for label in ("TDA", "TDA-transductive", "DMN-ZS (single view, gamma=1)", "TIP-X + TDA"):
        assert f"| {label} " in test_time and f"| {label} " not in name_only
    assert "| Zero-shot CLIP |" in test_time and "| Zero-shot CLIP |" in name_only
    header, *body = read_susx_csv(tmp_path / "r.csv", "susx.report_csv")
    groups = {row[header.index("method")]: row[header.index("group")] for row in body}
    assert groups["TDA"] == "test-time" and groups["Zero-shot CLIP"] == "name-only"


def test_eval_refuses_stream_options_before_any_work(tmp_path):
    from tests.stages.test_eval import make_cars_root

    data = make_cars_root(tmp_path / "data")
    common = ["--dataset", "stanford_cars", "--data-root", data, "--model", f"{TINY[1]}:{TINY[3]}"]
    common += ["--work-dir", tmp_path / "work"]
    bad = invoke("eval", *common, "--method", "tda-transductive", "--order-seeds", "0,1", expect=2)
    assert "--order-seeds does nothing" in bad.stderr
    bad = invoke("eval", *common, "--method", "dmn-zs", "--tda-preset", "paper", expect=2)
    assert "--tda-preset paper does nothing" in bad.stderr
    # cifar10 has no TDA paper values: refused before its (absent) images are even looked for
    bad = invoke("eval", *common[:2], "-d", "cifar10", *common[2:], "--method", "tda", "--tda-preset", "paper",
                 expect=2)  # fmt: skip
    assert "TDA has no paper configuration for dataset 'cifar10'" in bad.stderr
    assert not (tmp_path / "work").exists()
