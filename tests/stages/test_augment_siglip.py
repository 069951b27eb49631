"""Augmented support embeddings, and SigLIP-style models with a logit bias."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from susx_cli.artifacts import hdf5
from tests.helpers import TINY, invoke, make_class_folders, make_image, make_split

CLASSES = ["zebra", "apple", "mango"]
SIGMOID = ["--model", "susx-tiny-sigmoid", "--pretrained", "none"]


@pytest.fixture(scope="module")
def imgs(tmp_path_factory) -> Path:
    """Class folders with square, wide and tall images (the crop's ratio fallback gets exercised too)."""
    root = tmp_path_factory.mktemp("aug")
    make_class_folders(root / "imgs", CLASSES, 3)
    make_image(root / "imgs" / "zebra" / "wide.png", 7, (200, 40, 40), size=32)
    from PIL import Image

    Image.new("RGB", (96, 20), (10, 200, 30)).save(root / "imgs" / "apple" / "strip.png")
    Image.new("RGB", (18, 70), (10, 30, 200)).save(root / "imgs" / "mango" / "tall.png")
    (root / "classes.txt").write_text("\n".join(CLASSES))
    return root


def _embed(root: Path, name: str, *extra) -> Path:
    out = root / name
    invoke(
        "embed",
        root / "imgs",
        "-c",
        root / "classes.txt",
        "-o",
        out,
        *TINY,
        "--device",
        "cpu",
        "--quiet",
        *extra,
    )
    return out


def _rows(path: Path) -> np.ndarray:
    return hdf5.read_features(path).features


def test_augmented_features_do_not_depend_on_batch_size_or_workers(imgs):
    one = _rows(_embed(imgs, "b1w0.h5", "--augment-passes", "3", "--batch-size", "1", "--workers", "0"))
    seven = _rows(_embed(imgs, "b7w0.h5", "--augment-passes", "3", "--batch-size", "7", "--workers", "0"))
    workers = _rows(_embed(imgs, "b7w2.h5", "--augment-passes", "3", "--batch-size", "7", "--workers", "2"))
    assert np.array_equal(seven, workers)  # same forward passes: bit for bit
    # Same views; only the forward pass's batch differs, which BLAS may round differently.
    np.testing.assert_allclose(one, seven, rtol=0, atol=1e-6)
    assert hdf5.read_features(imgs / "b1w0.h5").keys == hdf5.read_features(imgs / "b7w2.h5").keys


def test_views_are_seeded_by_seed_key_and_pass_only():
    from PIL import Image

    from susx_cli.embedding import Augmentation

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    aug = Augmentation(4, 0, (16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    views = aug.views(img, "a/x.png")
    assert views.shape == (4, 3, 16, 16)
    assert np.array_equal(views.numpy(), aug.views(img, "a/x.png").numpy())
    # pass v is the same view whatever the number of passes
    assert np.array_equal(
        views[:2].numpy(), Augmentation(2, 0, (16, 16), (0.5,) * 3, (0.25,) * 3).views(img, "a/x.png").numpy()
    )
    assert not np.array_equal(views[0].numpy(), views[1].numpy())
    assert not np.array_equal(views.numpy(), aug.views(img, "a/y.png").numpy())
    other_seed = Augmentation(4, 1, (16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert not np.array_equal(views.numpy(), other_seed.views(img, "a/x.png").numpy())


def _stub_raw(views: np.ndarray, dim: int) -> np.ndarray:
    """The stub encoder's raw (unnormalised) embedding of (N, 3, H, W) views: (N, dim) float64, a fixed
    function of each view's 2 x 2 pooled pixels, scaled by a factor that varies with them too, so views
    differ in direction and norm, and the mean of raw rows differs from the mean of unit rows."""
    n, c, h, w = views.shape
    pooled = views[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, 2, h // 2, 2, w // 2).mean(axis=(3, 5))
    pooled = pooled.reshape(n, 4 * c)
    projection = np.random.default_rng(5).normal(size=(4 * c, dim))
    # sin of a steep multiple: nearby crops of one image still point in clearly different directions.
    return (np.sin(40.0 * pooled) @ projection) * np.exp(2.0 * np.cos(40.0 * pooled[:, :1]))


def test_augmented_feature_is_the_normalised_mean_of_the_raw_view_features(imgs, monkeypatch):
    """--augment-passes K through the whole embed path against a direct computation: the image's K views
    (drawn again here), their raw embeddings by a stub encoder, averaged, then L2-normalised once."""
    from PIL import Image

    from susx_cli import embedding

    real_load = embedding.load_encoder

    class StubEncoder:
        def __init__(self, inner):
            self.identity, self.preprocess = inner.identity, inner.preprocess
            self.device, self.input_config = inner.device, inner.input_config

        def encode_images(self, pixels, normalize=True):
            raw = _stub_raw(pixels.numpy().astype(np.float64), self.identity.embed_dim)
            return raw / np.linalg.norm(raw, axis=1, keepdims=True) if normalize else raw.astype(np.float32)

    monkeypatch.setattr(embedding, "load_encoder", lambda *a, **k: StubEncoder(real_load(*a, **k)))
    passes = 4
    got = hdf5.read_features(_embed(imgs, "stub.h5", "--augment-passes", str(passes), "--batch-size", "5"))
    stub = StubEncoder(real_load("susx-tiny-vit", "none", device="cpu"))
    augment = embedding.augmentation(stub, passes, 0)
    apart = []  # how far each row is from the normalised mean of unit view rows (the wrong order)
    for key, row in zip(got.keys, got.features, strict=True):
        with Image.open(imgs / "imgs" / key) as img:
            views = augment.views(img.convert("RGB"), key).numpy().astype(np.float64)  # (K, 3, H, W)
        raw = _stub_raw(views, stub.identity.embed_dim).astype(np.float32).astype(np.float64)  # (K, D)
        mean = raw.mean(axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), rtol=0, atol=1e-6)
        unit_mean = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).mean(axis=0)
        apart.append(np.abs(row - unit_mean / np.linalg.norm(unit_mean)).max())
    # 12 images; the two of one flat colour have identical views, where both orders agree.
    assert len(apart) == 12 and sum(d > 1e-2 for d in apart) >= 10


@pytest.mark.parametrize("size", [(32, 32), (96, 20), (20, 96), (1, 1), (500, 3)])
def test_crop_box_stays_inside_and_covers_the_scale(size):
    from susx_cli.embedding import crop_box, view_generator

    width, height = size
    for view in range(30):
        top, left, h, w = crop_box(width, height, view_generator(0, "k", view))
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width and h >= 1 and w >= 1
        if width == height and width > 8:  # a square image always finds a crop in range
            assert 0.5 * width * height * 0.9 <= h * w <= width * height


def test_one_pass_is_todays_features_and_more_passes_differ(imgs):
    plain = _embed(imgs, "plain.h5")
    one = _embed(imgs, "one.h5", "--augment-passes", "1")
    three = _embed(imgs, "three.h5", "--augment-passes", "3")
    assert np.array_equal(_rows(plain), _rows(one))
    assert hdf5.read_features(plain).provenance["options"] == hdf5.read_features(one).provenance["options"]
    # a file made without the option is up to date for --augment-passes 1
    r = invoke(
        "embed", imgs / "imgs", "-c", imgs / "classes.txt", "-o", plain, *TINY, "--augment-passes", "1"
    )
    assert "up to date" in r.stderr
    f3 = _rows(three)
    assert f3.shape == _rows(plain).shape and not np.allclose(f3, _rows(plain), atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(f3, axis=1), 1.0, atol=1e-6)
    seeded = _rows(_embed(imgs, "seed1.h5", "--augment-passes", "3", "--seed", "1"))
    assert not np.allclose(f3, seeded, atol=1e-4)


def test_passes_and_seed_are_recorded(imgs):
    out = _embed(imgs, "rec.h5", "--augment-passes", "2", "--seed", "5")
    with h5py.File(out) as f:
        assert int(f.attrs["augment_passes"]) == 2 and int(f.attrs["augment_seed"]) == 5
    options = hdf5.read_features(out).provenance["options"]
    assert options["augment_passes"] == 2 and options["augment_seed"] == 5
    with h5py.File(_embed(imgs, "plain1.h5")) as f:
        assert int(f.attrs["augment_passes"]) == 1 and "augment_seed" not in f.attrs
    assert "augment_passes" not in hdf5.read_features(imgs / "plain1.h5").provenance["options"]
    # shards join into the single-process file, attributes included
    for i in (0, 1):
        _embed(
            imgs,
            "sh.h5",
            "--augment-passes",
            "2",
            "--seed",
            "5",
            "--batch-size",
            "4",
            "--num-shards",
            "2",
            "--shard-index",
            str(i),
        )
    single = _embed(imgs, "single.h5", "--augment-passes", "2", "--seed", "5", "--batch-size", "4")
    assert np.array_equal(_rows(imgs / "sh.h5"), _rows(single))
    with h5py.File(imgs / "sh.h5") as f:
        assert int(f.attrs["augment_passes"]) == 2 and int(f.attrs["augment_seed"]) == 5


def test_bad_augment_passes_are_refused(imgs, tmp_path):
    r = invoke(
        "embed",
        imgs / "imgs",
        "-c",
        imgs / "classes.txt",
        "-o",
        tmp_path / "x.h5",
        *TINY,
        "--augment-passes",
        "0",
        expect=2,
    )
    assert "--augment-passes must be at least 1" in r.stderr
    invoke("prompts", "-c", imgs / "classes.txt", "-o", tmp_path / "p.json")
    r = invoke(
        "embed", tmp_path / "p.json", "-o", tmp_path / "t.h5", *TINY, "--augment-passes", "3", expect=2
    )
    assert "--augment-passes" in r.stderr and "prompts file" in r.stderr


def test_eval_augments_folder_shots_only(tmp_path):
    from susx_cli.stages.eval import EvalConfig, SupportChoice

    def cfg(**extra):
        return EvalConfig.from_options(
            num_datasets=1,
            models=["susx-tiny-vit"],
            pretrained=["none"],
            supports=[],
            methods=["zero-shot"],
            calibrations=["loo"],
            data_root=tmp_path,
            work_dir=tmp_path,
            results_dir=tmp_path,
            **extra,
        )

    shots, folder = (
        SupportChoice("folder-shots:2", "folder-shots", "2shot", shots=2),
        SupportChoice("x", "folder", "x"),
    )
    assert cfg().support_passes(shots) == 10 and cfg().support_passes(folder) == 1
    assert cfg(augment_passes=1).support_passes(shots) == 1
    with pytest.raises(Exception, match="augment-passes"):
        cfg(augment_passes=0)


# ------------------------------------------------------------------------------------------------ SigLIP


def test_model_identity_reads_files_without_a_bias():
    from susx_cli.artifacts.schema import ModelIdentity

    old = {
        "arch": "ViT-B-32",
        "pretrained": "openai",
        "checkpoint_sha256": None,
        "embed_dim": 512,
        "logit_scale": 100.0,
    }
    m = ModelIdentity.from_dict(old)
    assert m.logit_bias is None and "logit_bias" not in m.to_dict()
    assert ModelIdentity.from_dict({**old, "logit_bias": -10.0}).to_dict()["logit_bias"] == -10.0


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    """The whole pipeline with the SigLIP-style tiny model: prompts, a curated folder, text, support, query."""
    import os

    root = tmp_path_factory.mktemp("siglip")
    old = Path.cwd()
    os.chdir(root)
    try:
        (root / "classes.txt").write_text("\n".join(CLASSES))
        invoke("prompts", "-c", "classes.txt", "-o", "p.json")
        make_class_folders(root / "shots", CLASSES, 3)
        split = make_split(root / "data", CLASSES, {"test": 3})
        invoke("curate", "p.json", "-o", "sup", "--images", "shots")
        invoke("embed", "p.json", "-o", "text.h5", *SIGMOID)
        invoke("embed", "sup", "-o", "sup.h5", *SIGMOID, "--augment-passes", "2")
        invoke("embed", split, "--split", "test", "-c", "p.json", "-o", "test.h5", *SIGMOID)
    finally:
        os.chdir(old)
    return root


def test_siglip_pipeline_records_and_uses_the_bias(siglip, monkeypatch):
    monkeypatch.chdir(siglip)
    text = hdf5.read_text_classifier("text.h5")
    scale, bias = text.model.logit_scale, text.model.logit_bias
    assert bias == pytest.approx(-10.0) and scale == pytest.approx(10.0)  # the config's initial values
    assert hdf5.read_features("test.h5").model.logit_bias == bias

    fixed = ["--mode", "fixed", "--alpha", "1", "--beta", "2", "--gamma", "0.5"]
    invoke("calibrate", "text.h5", "sup.h5", "-o", "model.json", "--logit-scale", "model", *fixed)
    invoke("calibrate", "text.h5", "sup.h5", "-o", "plain.json", "--logit-scale", repr(scale), *fixed)
    cal = json.loads(Path("model.json").read_text())
    assert cal["logit_scale"] == {"value": scale, "source": "model", "bias": bias}
    assert cal["options"]["logit_bias"] == bias and cal["model"]["logit_bias"] == bias
    assert "bias" not in json.loads(Path("plain.json").read_text())["logit_scale"]

    scores = {}
    for name in ("model", "plain"):
        invoke(
            "predict",
            "text.h5",
            "test.h5",
            "--calibration",
            f"{name}.json",
            "--method",
            "zero-shot",
            "-o",
            f"zs-{name}.h5",
        )
        p = hdf5.read_predictions(f"zs-{name}.h5")
        scores[name] = p
    assert np.array_equal(scores["model"].top5, scores["plain"].top5)  # a constant bias leaves the ranking
    np.testing.assert_allclose(scores["model"].scores - scores["plain"].scores, bias, rtol=0, atol=1e-9)
    assert scores["model"].metrics["logit_bias"] == bias and "logit_bias" not in scores["plain"].metrics

    # the methods with support run with it too: TIP-X by leave-one-out, GDA by k-fold
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "loo.json",
        "--logit-scale",
        "model",
        "--alpha-grid",
        "1,10",
        "--beta-grid",
        "1,5",
        "--gamma-grid",
        "0,1",
    )
    r = invoke(
        "predict",
        "text.h5",
        "test.h5",
        "-s",
        "sup.h5",
        "--calibration",
        "loo.json",
        "-o",
        "tipx.h5",
        "--json",
    )
    assert json.loads(r.stdout)["metrics"]["n"] == 9
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "-o",
        "gda.json",
        "--method",
        "gda",
        "--mode",
        "kfold",
        "--folds",
        "3",
        "--logit-scale",
        "model",
    )
    invoke("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "gda.json", "-o", "gda.h5")
    assert hdf5.read_predictions("gda.h5").metrics["logit_bias"] == bias


def test_bias_enters_every_method_as_a_constant():
    """scale * cos + bias in each method's logits: exactly a shift of the bias-free logits, argmax unchanged."""
    import torch

    from susx_cli.method import gda, registry
    from susx_cli.method.spec import Support

    g = torch.Generator().manual_seed(0)
    norm = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    f, F, W = (
        norm(torch.randn(6, 8, generator=g, dtype=torch.float64)),
        norm(torch.randn(12, 8, generator=g, dtype=torch.float64)),
        norm(torch.randn(3, 8, generator=g, dtype=torch.float64)),
    )
    y = torch.arange(12) % 3
    for name in ("zero-shot", "tip-adapter", "tip-x"):
        method = registry.get(name)
        values = {"alpha": 1.0, "beta": 2.0, "gamma": 0.5}
        values = {h.name: values[h.name] for h in method.hyperparameters}
        support = Support(F, y) if method.needs_support else None
        base = method.logits(method.fit(W, support, values, logit_scale=10.0), f)
        shifted = method.logits(method.fit(W, support, values, logit_scale=10.0, logit_bias=-10.0), f)
        torch.testing.assert_close(shifted - base, torch.full_like(base, -10.0), rtol=0, atol=1e-12)
    head = gda.fit_gda(F, y, 3)
    base, shifted = gda.gda_logits(f, W, head, 0.1, 10.0), gda.gda_logits(f, W, head, 0.1, 10.0, -10.0)
    torch.testing.assert_close(shifted - base, torch.full_like(base, -10.0), rtol=0, atol=1e-12)
