"""One encoder (same features as before for folders, splits and tar shards) and one
device/precision runtime (cuda:LOCAL_RANK everywhere under torchrun; a bad --device is a one-line error)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from susx_cli.artifacts import common, hdf5
from susx_cli.artifacts.schema import ModelIdentity
from susx_cli.errors import SusxError
from tests.helpers import TINY, class_color, invoke, make_class_folders, make_image, make_split

CLASSES = ["zebra", "apple", "mango", "kiwi"]
BATCH = 5  # images per forward pass: several batches, the last one short


# ------------------------------------------------------------------------------------------ the reference


@pytest.fixture(scope="module")
def reference_model():
    """The tiny random model made with open_clip directly, as ``load_model`` did before the encoder."""
    import open_clip
    import torch
    from open_clip.factory import _MODEL_CONFIGS

    if "susx-tiny-vit" not in _MODEL_CONFIGS:
        open_clip.add_model_config(
            Path(__file__).resolve().parents[2] / "susx_cli" / "data" / "susx-tiny-vit.json"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, _, preprocess = open_clip.create_model_and_transforms(
            "susx-tiny-vit", pretrained=None, device="cpu"
        )
    model.eval()
    return model, preprocess, open_clip.get_tokenizer("susx-tiny-vit")


def _reference_features(reference_model, images: list[tuple[str, object]], batch: int = BATCH):
    """The pre-encoder embed loop, inline: per batch of items, decode, skip unreadable, one forward pass,
    L2-normalise in float32. ``images``: (key, path or bytes) in item order. Returns (features, keys)."""
    import torch
    from PIL import Image

    model, preprocess, _ = reference_model
    feats, keys = [], []
    for start in range(0, len(images), batch):
        good = []
        for key, source in images[start : start + batch]:
            try:
                with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                    img.load()
                    good.append((key, preprocess(img.convert("RGB"))))
            except Exception:
                continue
        if good:
            with torch.no_grad():
                out = model.encode_image(torch.stack([t for _, t in good]).to("cpu", torch.float32)).float()
                feats.append(torch.nn.functional.normalize(out, dim=-1).cpu().numpy())
            keys += [k for k, _ in good]
    return np.concatenate(feats), keys


@pytest.fixture()
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUSX_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES))
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    return tmp_path


def test_class_folder_features_are_bit_identical_to_the_old_loop(work, reference_model):
    from susx_cli import imagesets

    make_class_folders(work / "imgs", CLASSES, 3)
    (work / "imgs" / "apple" / "broken.png").write_bytes(b"\x89PNG not really")
    invoke("embed", "imgs", "-o", "f.h5", "-c", "p.json", "-b", BATCH, "--workers", 2, *TINY)
    got = hdf5.read_features(work / "f.h5")
    items = imagesets.resolve(work / "imgs", classes=CLASSES).items
    want, keys = _reference_features(reference_model, [(it.key, it.path) for it in items])
    assert got.keys == keys and [s["key"] for s in got.skipped] == ["apple/broken.png"]
    assert got.features.dtype == np.float32 and np.array_equal(got.features, want)


def test_split_features_are_bit_identical_to_the_old_loop(work, reference_model):
    from susx_cli import imagesets

    split = make_split(work / "data", CLASSES, {"test": 3})
    invoke(
        "embed", split, "--split", "test", "-c", "p.json", "-o", "t.h5", "-b", BATCH, "--workers", 0, *TINY
    )
    got = hdf5.read_features(work / "t.h5")
    items = imagesets.resolve(split, classes=CLASSES, split="test").items
    want, keys = _reference_features(reference_model, [(it.key, it.path) for it in items])
    assert got.keys == keys and got.labels.tolist() == [it.label for it in items]
    assert np.array_equal(got.features, want)


def _write_tars(root: Path) -> list[tuple[str, bytes]]:
    """Two webdataset shards (images, a JSON sidecar each, one corrupt image); their images in tar order."""
    root.mkdir(parents=True)
    images = []
    for t in range(2):
        name = f"{t:05d}.tar"
        with tarfile.open(root / name, "w") as tar:
            for j in range(6):
                path = make_image(root.parent / "src" / f"{t}_{j}.png", 10 * t + j, class_color(j % 3))
                members = [(f"s{j:03d}.png", path.read_bytes()), (f"s{j:03d}.json", b'{"caption": "x"}')]
                if t == 1 and j == 2:
                    members[0] = (f"s{j:03d}.png", b"\x89PNG truncated")
                for member, data in members:
                    info = tarfile.TarInfo(member)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                    if member.endswith(".png"):
                        images.append((f"{name}/{member}", data))
    return images


def test_tar_shard_features_are_bit_identical_to_the_old_loop(work, reference_model):
    from susx_cli.sources.pool import PoolSource

    images = _write_tars(work / "tars")
    source = PoolSource(
        work / "tars", 1, model="susx-tiny-vit", pretrained="none", device="cpu", batch_size=BATCH, workers=2
    )
    source._embed(work / "pool.h5", overwrite=False)
    got = hdf5.read_features(work / "pool.h5")
    want, keys = _reference_features(reference_model, images)
    assert got.keys == keys and [s["key"] for s in got.skipped] == ["00001.tar/s002.png"]
    assert (got.labels == -1).all() and np.array_equal(got.features, want)
    assert got.provenance["options"]["input_layout"] == "webdataset"


def test_text_classifier_is_bit_identical_to_the_old_loop(work, reference_model):
    import torch

    from susx_cli.artifacts.prompts import read_prompts

    invoke("embed", "p.json", "-o", "text.h5", *TINY)
    got = hdf5.read_text_classifier(work / "text.h5")
    model, _, tokenizer = reference_model
    rows = []
    for texts in read_prompts(work / "p.json").pool_texts("template"):
        with torch.no_grad():
            emb = torch.nn.functional.normalize(model.encode_text(tokenizer(texts)).float(), dim=-1).double()
        rows.append(torch.nn.functional.normalize(emb.sum(0), dim=0).float().numpy())
    np.testing.assert_allclose(
        got.weights, np.stack(rows), rtol=0, atol=1e-6
    )  # float64 sums: order-level rounding


def test_encoder_returns_unit_float32_rows_and_its_identity():
    import torch

    from susx_cli.encoder import load_encoder

    enc = load_encoder("susx-tiny-vit", "none", device="cpu", precision="auto")
    texts = enc.encode_texts(["a", "b", "c"], batch_size=2)
    images = enc.encode_images(torch.zeros(2, 3, 32, 32))
    for x, n in ((texts, 3), (images, 2)):
        assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (n, enc.identity.embed_dim)
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert isinstance(enc.identity, ModelIdentity) and enc.identity.random_weights
    # batch composition may change the last bits (BLAS blocking), never more
    np.testing.assert_allclose(enc.encode_texts(["a", "b", "c"]), texts, rtol=0, atol=1e-6)
    assert enc.encode_texts([]).shape == (0, enc.identity.embed_dim)


def test_model_is_run_only_by_the_encoder_backend_and_sources_do_not_import_stages():
    root = Path(__file__).resolve().parents[2] / "susx_cli"
    callers = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "encode_image(" in p.read_text() or "encode_text(" in p.read_text()
    )
    assert callers == ["adapters/openclip.py"]
    upward = sorted(
        str(p.relative_to(root))
        for p in root.joinpath("sources").glob("*.py")
        if "susx_cli.stages" in p.read_text()
    )
    assert upward == []


# -------------------------------------------------------------------------------------------- the runtime


@pytest.fixture()
def fake_gpus(monkeypatch):
    """A machine with 2 CUDA GPUs and this process as torchrun's local rank 1 (nothing runs on them)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.delenv("SLURM_LOCALID", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")


@pytest.fixture()
def cpu_only(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_is_this_ranks_gpu(fake_gpus, monkeypatch):
    from susx_cli import runtime

    assert runtime.resolve_device("auto") == runtime.resolve_device(None) == "cuda:1"
    assert runtime.method_device("auto") == "cuda:1"
    assert runtime.resolve_device("cuda:0") == "cuda:0" and runtime.resolve_device("cuda") == "cuda"
    monkeypatch.delenv("LOCAL_RANK")
    assert runtime.resolve_device("auto") == "cuda"
    monkeypatch.setenv("SLURM_LOCALID", "3")  # one visible GPU per task: ranks wrap onto what is visible
    assert runtime.resolve_device("auto") == "cuda:1"
    assert runtime.resolve_precision("auto", "cuda:1", gpu_auto="fp16") == "fp16"
    assert runtime.resolve_precision("auto", "cuda:1") == "fp32"


def test_auto_without_gpus_and_mps_never_runs_float64(cpu_only, monkeypatch):
    import torch

    from susx_cli import runtime

    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (
        runtime.resolve_device("auto") == "cpu"
        and runtime.resolve_precision("auto", "cpu", gpu_auto="fp16") == "fp32"
    )
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.resolve_device("auto") == "mps" and runtime.method_device("auto") == "cpu"
    assert runtime.method_device("mps") == "cpu"
    assert runtime.torch_dtype("bf16") == torch.bfloat16


@pytest.mark.parametrize(
    ("device", "gpus", "needle"),
    [
        ("cuda", 0, "--device cuda: no CUDA GPU is available; this machine has: cpu"),
        ("cuda:1", 0, "no CUDA GPU is available; this machine has: cpu"),
        ("cuda:7", 2, "--device cuda:7: there is no GPU 7; this machine has: cpu, cuda:0, cuda:1"),
        ("mps", 0, "--device mps: no Apple MPS device is available; this machine has: cpu"),
        ("gpu0", 0, "--device gpu0: not a device name; this machine has: cpu"),
    ],
)
def test_bad_devices_name_what_the_machine_has(monkeypatch, device, gpus, needle):
    import torch

    from susx_cli import runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(SusxError) as err:
        runtime.resolve_device(device)
    assert needle in err.value.one_line() and "\n" not in err.value.one_line()


def test_bad_precisions_are_refused():
    from susx_cli import runtime

    with pytest.raises(SusxError, match="unknown precision 'fp8'"):
        runtime.resolve_precision("fp8", "cpu")
    with pytest.raises(SusxError, match="fp16 needs a GPU"):
        runtime.resolve_precision("fp16", "cpu")


class _Stop(Exception):
    """Raised by a patched model or tensor factory once it has seen the device it was given."""


def _record_model_device(monkeypatch) -> list[str]:
    """Make open_clip record the device it is asked to load on, and stop there."""
    import open_clip

    seen: list[str] = []

    def create(*args, device=None, **kwargs):
        seen.append(str(device))
        raise _Stop

    monkeypatch.setattr(open_clip, "create_model_and_transforms", create)
    return seen


def test_every_clip_consumer_loads_on_this_ranks_gpu(work, fake_gpus, monkeypatch):
    from susx_cli.sources.laion import LaionSource
    from susx_cli.sources.pool import PoolSource
    from susx_cli.stages.embed import embed_images, embed_texts

    seen = _record_model_device(monkeypatch)
    make_class_folders(work / "imgs", CLASSES, 1)
    with pytest.raises(SusxError):
        embed_images(
            work / "imgs",
            work / "f.h5",
            model="susx-tiny-vit",
            pretrained="none",
            classes_path=work / "p.json",
        )
    with pytest.raises(SusxError):
        embed_texts(work / "p.json", work / "t.h5", model="susx-tiny-vit", pretrained="none", device="auto")
    pool = PoolSource(work / "imgs", 1, model="susx-tiny-vit", pretrained="none")
    assert pool.device == "cuda:1"
    with pytest.raises(SusxError):
        pool._embed(work / "pool.h5", overwrite=False)
    assert (
        LaionSource(1, model="susx-tiny-vit", pretrained="none", knn_url="http://127.0.0.1:9").device
        == "cuda:1"
    )  # what its caption ranking loads on
    assert seen == ["cuda:1"] * 3


@pytest.mark.slow
def test_sd_runs_on_this_ranks_gpu_in_fp16(fake_gpus, tmp_path):
    pytest.importorskip("diffusers")
    from susx_cli.adapters.tiny_sd import build_tiny_pipeline
    from susx_cli.sources.sd import SDSource

    runtime = SDSource(1, model=str(build_tiny_pipeline(tmp_path / "tiny-sd")))._runtime()
    assert runtime["device"] == "cuda:1" and runtime["precision"] == "fp16"


def _method_files(root: Path) -> tuple[Path, Path]:
    """A text classifier and a labelled support feature file with random unit rows (no model needed)."""
    rng = np.random.default_rng(0)
    ident = ModelIdentity("x", None, None, 8, 100.0)
    weights = rng.normal(size=(2, 8)).astype(np.float32)
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    text = root / "text.h5"
    hdf5.write_text_classifier(
        text,
        hdf5.TextClassifier(
            weights, np.array([1, 1]), ["a", "b"], ident, "template", common.provenance({}, [])
        ),
    )
    feats = rng.normal(size=(4, 8)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    support = root / "support.h5"
    writer = hdf5.FeatureWriter(
        support, dim=8, items_total=4, classes=["a", "b"], model=ident, prov=common.provenance({}, [])
    )
    writer.append(feats, np.array([0, 0, 1, 1]), [f"k{i}" for i in range(4)])
    writer.finish()
    writer.close()
    return text, support


def test_calibrate_and_predict_run_the_method_on_this_ranks_gpu(fake_gpus, tmp_path, monkeypatch):
    from susx_cli.stages import calibrate, predict

    seen: list[str] = []

    def as_float64(x, device):
        seen.append(device)
        raise _Stop

    monkeypatch.setattr(calibrate, "as_float64", as_float64)
    monkeypatch.setattr(predict, "as_float64", as_float64)
    text, support = _method_files(tmp_path)
    with pytest.raises(_Stop):
        calibrate.calibrate_files(text, support, tmp_path / "cal.json")
    with pytest.raises(_Stop):
        predict.predict_files(text, support, tmp_path / "pred.h5")
    assert seen == ["cuda:1", "cuda:1"]


def _one_line_cuda_error(result) -> None:
    assert result.exit_code != 0
    err = result.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert (
        "--device cuda: no CUDA GPU is available; this machine has: cpu" in err
        and "Traceback" not in result.output
    )


@pytest.mark.parametrize(
    "args",
    [
        ["embed", "imgs", "-o", "f.h5", "-c", "p.json", *TINY],
        ["embed", "p.json", "-o", "t.h5", *TINY],
        ["curate", "p.json", "-o", "sup", "--source", "sd", "-k", "1"],
        ["curate", "p.json", "-o", "sup", "--source", "laion", "-k", "1"],
        ["curate", "p.json", "-o", "sup", "--source", "pool", "--pool-images", "imgs", "-k", "1"],
        ["calibrate", "text.h5", "support.h5", "-o", "cal.json"],
        ["predict", "text.h5", "support.h5", "-o", "pred.h5"],
        [
            "eval",
            "-d",
            "caltech101",
            "--data-root",
            "data",
            "-m",
            "susx-tiny-vit",
            "-p",
            "none",
            "--method",
            "zero-shot",
        ],
    ],
    ids=[
        "embed-images",
        "embed-texts",
        "curate-sd",
        "curate-laion",
        "curate-pool",
        "calibrate",
        "predict",
        "eval",
    ],
)
def test_device_cuda_without_cuda_is_a_one_line_error_in_every_command(work, cpu_only, args):
    from typer.testing import CliRunner

    from susx_cli.cli import app

    if "sd" in args:
        pytest.importorskip("diffusers")
    make_class_folders(work / "imgs", CLASSES, 1)
    _method_files(work)
    result = CliRunner().invoke(app, [*args, "--device", "cuda"])
    _one_line_cuda_error(result)
    assert not any((work / name).exists() for name in ("f.h5", "t.h5", "sup", "cal.json", "pred.h5"))
