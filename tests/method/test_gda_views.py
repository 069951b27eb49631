"""GDA fitted on every augmented view, as its paper does: the feature file's views (embed --keep-views),
the fit and the k-fold choice on view rows (folds over images), 1-shot GDA through calibrate and predict,
and the README's few-shot recipe end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from susx_cli.artifacts import hdf5
from susx_cli.errors import SusxError
from susx_cli.method import gda, kfold, registry
from susx_cli.method.spec import Support
from tests.helpers import TINY, invoke, make_class_folders
from tests.method.test_gda import _unit, numpy_logits

CLASSES = ["zebra", "apple", "mango"]


def _views_problem(shots: int, K: int, D: int = 8, C: int = 3, seed: int = 0):
    """Support views (N, K, D) around class centres, their averaged unit rows (N, D), labels, W, queries."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(C, D)))
    W = _unit(centres + 0.7 * rng.normal(size=(C, D)))
    y = np.repeat(np.arange(C), shots)
    views = np.stack([_unit(centres[y] + 0.5 * rng.normal(size=(len(y), D))) for _ in range(K)], axis=1)
    F = _unit(views.mean(axis=1))
    yq = rng.integers(0, C, 30)
    f = _unit(centres[yq] + 0.5 * rng.normal(size=(30, D)))
    return views, F, y, W, f, yq


def _support(F, y, views=None) -> Support:
    return Support(
        torch.from_numpy(F), torch.from_numpy(y), None if views is None else torch.from_numpy(views)
    )


def test_gda_fits_on_every_view_row_and_one_shot_works():
    views, F, y, W, f, _ = _views_problem(shots=1, K=4)
    spec = registry.get("gda")
    state = spec.fit(torch.from_numpy(W), _support(F, y, views), {"alpha": 0.5})
    got = spec.logits(state, torch.from_numpy(f)).numpy()
    rows, labels = views.reshape(-1, views.shape[2]), np.repeat(y, views.shape[1])
    assert np.allclose(got, numpy_logits(f, W, rows, labels, 0.5), atol=1e-9)
    # the same 1-shot support without its views has no within-class scatter: refused, as before
    with pytest.raises(SusxError, match="more support images than classes"):
        spec.check_support(torch.from_numpy(W), _support(F, y))


def test_kfold_with_views_fits_training_views_and_scores_held_out_images():
    views, F, y, W, _, _ = _views_problem(shots=4, K=3)
    split = kfold.stratified_folds(torch.from_numpy(y), 2, seed=1)
    got = kfold.gda_alpha(
        torch.from_numpy(F), torch.from_numpy(y), torch.from_numpy(W), split, views=torch.from_numpy(views)
    )
    counts = np.zeros(len(gda.ALPHA_GRID), dtype=np.int64)
    for i in range(2):
        train, held = split.train(i).numpy(), split.held_out(i).numpy()
        rows, labels = views[train].reshape(-1, views.shape[2]), np.repeat(y[train], views.shape[1])
        for a, alpha in enumerate(gda.ALPHA_GRID):
            pred = numpy_logits(F[held], W, rows, labels, alpha).argmax(1)
            counts[a] += int((pred == y[held]).sum())
    assert got.counts.tolist() == counts.tolist() and got.total == len(y)
    # a held-out image's views never enter its own fold: changing them moves only the other fold's head
    moved = views.copy()
    moved[split.held_out(0).numpy()] = _unit(np.ones((1, views.shape[2])))[0]
    head0 = lambda v: gda.fit_gda(  # noqa: E731
        torch.from_numpy(v[split.train(0).numpy()].reshape(-1, v.shape[2])),
        torch.from_numpy(np.repeat(y[split.train(0).numpy()], v.shape[1])),
        W.shape[0],
    )
    assert torch.equal(head0(views).weight, head0(moved).weight)


@pytest.fixture(scope="module")
def one_shot(tmp_path_factory):
    """Prompts, text classifier, a 1-shot folder embedded with 3 kept views, and labelled queries."""
    root = tmp_path_factory.mktemp("views")
    old = Path.cwd()
    os.chdir(root)
    try:
        (root / "classes.txt").write_text("\n".join(CLASSES))
        invoke("prompts", "-c", "classes.txt", "-o", "p.json")
        invoke("embed", "p.json", "-o", "text.h5", *TINY)
        make_class_folders(root / "shots", CLASSES, 1)
        make_class_folders(root / "queries", CLASSES, 2, seed=7)
        common = ("-c", "p.json", *TINY, "--workers", "0", "--augment-passes", "3")
        invoke("embed", "shots", "-o", "sup.h5", *common, "--keep-views")
        invoke("embed", "shots", "-o", "sup-plain.h5", *common)
        invoke("embed", "queries", "-o", "q.h5", "-c", "p.json", *TINY, "--workers", "0")
    finally:
        os.chdir(old)
    return root


def test_keep_views_writes_unit_views_beside_the_same_averaged_rows(one_shot):
    with h5py.File(one_shot / "sup.h5", "r") as f:  # plain h5py reads them
        views, features = f["views"][()], f["features"][()]
    assert views.shape == (3, 3, features.shape[1])
    assert np.allclose(np.linalg.norm(views, axis=2), 1.0, atol=1e-5)
    assert len({views[0, k].tobytes() for k in range(3)}) == 3  # three distinct views of one image
    plain = hdf5.read_features(one_shot / "sup-plain.h5")
    assert plain.views is None and np.array_equal(plain.features, features)  # the averaged rows are unchanged
    assert hdf5.read_features(one_shot / "sup.h5").provenance["options"]["keep_views"] is True


def test_keep_views_without_augmentation_is_refused(one_shot, tmp_path):
    bad = invoke("embed", one_shot / "shots", "-o", tmp_path / "x.h5", *TINY, "--keep-views", expect=2)
    assert "--augment-passes" in bad.stderr and not (tmp_path / "x.h5").exists()


def test_one_shot_gda_calibrates_and_predicts_on_views(one_shot, monkeypatch):
    monkeypatch.chdir(one_shot)
    invoke("calibrate", "text.h5", "sup.h5", "--method", "gda", "--val", "q.h5", "-o", "cal.json")
    assert json.loads((one_shot / "cal.json").read_text())["method"] == "gda"
    invoke("predict", "text.h5", "q.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "pred.h5")
    assert hdf5.read_predictions(one_shot / "pred.h5").predicted.shape == (6,)
    # without views one row per class has no scatter; k-fold needs two images per class either way
    bad = invoke(
        "calibrate", "text.h5", "sup-plain.h5", "--method", "gda", "--val", "q.h5", "-o", "c2.json", expect=2
    )
    assert "more support images than classes" in bad.stderr
    bad = invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "--method",
        "gda",
        "--mode",
        "kfold",
        "--folds",
        "2",
        "-o",
        "c3.json",
        expect=2,
    )
    assert (
        "k-fold needs at least 2 support images of every class" in bad.stderr and "--mode val" in bad.stderr
    )


# ------------------------------------------------------------------ the README's few-shot recipe

README = Path(__file__).resolve().parents[2] / "README.md"
RECIPE_START = "Training-free few-shot with augmented support"
RECIPE_END = "Why figures may differ from the paper's:"


def _recipe() -> tuple[str, list[list[str]]]:
    """The README's few-shot section and the commands of its bash block, one argument list each."""
    import shlex

    text = README.read_text(encoding="utf-8")
    section = text[text.index(RECIPE_START) : text.index(RECIPE_END)]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    joined = block.replace("\\\n", " ")
    return section, [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def _tiny(args: list[str], data: Path) -> list[str]:
    """A recipe command on the tiny dataset and model: the data root, one dataset for the listed ones
    (`-d ... ...`), the tiny random-weight model for RN50, images loaded in this process, and (eval) a
    small TIP-X / Tip-Adapter grid instead of the 200,000-point reference grid."""
    out, it = [], iter(args[1:])  # args[0] is "susx"
    for arg in it:
        if arg == "--data-root":
            out += [arg, str(data), "-d", "stanford_cars"]
            next(it)
        elif arg in ("-d", "-m"):
            next(it)
        elif arg != "...":
            out.append(arg)
    if out[0] == "eval":
        out += ["-m", f"{TINY[1]}:{TINY[3]}", "--workers", "0"]
        out += ["--alpha-grid", "0.5,2", "--beta-grid", "1,5", "--gamma-grid", "0.1,1"]
    return out


def test_every_figure_the_recipe_quotes_is_one_report_prints():
    import re

    from susx_cli.datasets.registry import PAPER_NUMBERS

    section, _ = _recipe()
    quoted = {float(x) for x in re.findall(r"\b\d{2}\.\d{2}\b", section)}
    printed = {v for figures in PAPER_NUMBERS.values() for v in figures.values()}
    assert len(quoted) >= 17 and quoted <= printed, quoted - printed


@pytest.mark.slow  # about a hundred augmented support images and some 30 calibrations on the CPU
def test_readme_few_shot_recipe_runs_end_to_end_one_shot_included(tmp_path, monkeypatch):
    from tests.helpers import make_split

    folder = tmp_path / "data" / "stanford_cars"
    make_split(folder, CLASSES, {"train": 16, "val": 2, "test": 3}).rename(
        folder / "split_zhou_StanfordCars.json"
    )
    monkeypatch.chdir(tmp_path)
    _, commands = _recipe()
    assert [c[1] for c in commands] == ["eval", "eval", "report", "report"]
    for command in commands:
        invoke(*_tiny(command, tmp_path / "data"))
    results = [json.loads(p.read_text()) for p in (tmp_path / "results-fs").glob("*.json")]
    runs = {(r["method"], r["support"]["shots"], r["calibration"]["mode"]) for r in results}
    methods = ("tip-adapter", "tip-x", "gda")
    expected = {(m, k, "val") for m in methods for k in (1, 2, 4, 8, 16)}
    expected |= {(m, k, "kfold") for m in methods for k in (2, 4, 8, 16)}
    assert runs == expected
    gda_one = next(r for r in results if r["method"] == "gda" and r["support"]["shots"] == 1)
    assert 0 <= gda_one["metrics"]["top1"] <= 100
    with h5py.File(gda_one["artifacts"]["support"], "r") as f:
        assert f["views"].shape[:2] == (3, 10)  # 1 shot x 3 classes, 10 views each: what GDA fitted on
    md = (tmp_path / "fewshot.md").read_text()
    assert "GDA" in md and "exp.log" in md and "APE" in md
    assert (tmp_path / "fewshot.png").stat().st_size > 0 and (tmp_path / "fewshot.csv").stat().st_size > 0


def test_one_shot_kfold_is_refused_before_any_run(tmp_path, monkeypatch):
    from tests.stages.test_eval import make_cars_root

    data = make_cars_root(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    args = ["eval", "--data-root", data, "-d", "stanford_cars", "-m", f"{TINY[1]}:{TINY[3]}"]
    args += ["--support", "folder-shots:1", "--support", "folder-shots:2", "--method", "gda"]
    bad = invoke(*args, "--calibration", "val", "--calibration", "kfold", "--results-dir", "r", expect=2)
    assert "folder-shots:1" in bad.stderr and "--calibration val" in bad.stderr
    assert not (tmp_path / "r").exists()


def test_two_shards_keep_the_views_one_process_keeps(tmp_path, monkeypatch):
    from tests.stages.test_embed_shards import embed_args, shard_test_images

    images = shard_test_images(tmp_path, monkeypatch)
    views = ["--augment-passes", "2", "--keep-views"]
    invoke(*embed_args(images, "one.h5"), *views)
    for i in ("0", "1"):
        invoke(*embed_args(images, "joined.h5"), *views, "--num-shards", "2", "--shard-index", i)
    one, joined = hdf5.read_features(tmp_path / "one.h5"), hdf5.read_features(tmp_path / "joined.h5")
    assert one.views.shape == (15, 2, one.features.shape[1])  # 15 readable images, one unreadable skipped
    assert joined.views.tobytes() == one.views.tobytes() and joined.keys == one.keys
