"""`curate --source pool`, text-to-image retrieval from a local collection (folder or webdataset tars)."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from susx_cli.artifacts import common
from susx_cli.artifacts.prompts import PromptEntry, Prompts, write_prompts
from tests.helpers import class_color, invoke, make_image

CLASSES = ["zebra", "apple"]  # index order differs from alphabetical order
CUPL = {
    "zebra": ["Black and white stripes.", "A striped horse."],
    "apple": ["A round red fruit.", "An apple tree."],
}
MODEL = ["--clip-model", "susx-tiny-vit", "--clip-pretrained", "none", "--device", "cpu"]


def _prompts(path: Path, cupl: bool = True) -> Path:
    entries = [
        PromptEntry(i, n, n, f"A photo of a {n}.", [f"itap of a {n}."], list(CUPL[n]) if cupl else [])
        for i, n in enumerate(CLASSES)
    ]
    write_prompts(path, Prompts(entries, "template", None, {}, common.provenance({}, [])))
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SUSX_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def pool(tmp_path) -> Path:
    root = tmp_path / "pool"
    for i in range(24):
        make_image(root / f"part{i % 2}" / f"im{i:03d}.png", i, class_color(i % 3))
    (root / "notes.txt").write_text("not an image")
    return root


def _manifest(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def test_pool_folder_end_to_end_and_cache(pool, tmp_path):
    prompts = _prompts(tmp_path / "prompts.json")
    result = invoke(
        "curate",
        prompts,
        "-o",
        tmp_path / "a",
        "--source",
        "pool",
        "--pool-images",
        pool,
        "-k",
        3,
        "--json",
        *MODEL,
    )
    summary = json.loads(result.stdout)["summary"]
    features = Path(summary["features"])
    assert features.parent == tmp_path / "cache" / "pool-features" and features.exists()
    rows = _manifest(tmp_path / "a")
    assert Counter(r["class_index"] for r in rows) == {0: 3, 1: 3}
    for r in rows:
        assert r["source"] == "pool" and r["query"] == f"A photo of a {r['class_name']}."
        assert (pool / r["origin"]).is_file() and r["path"].startswith(f"{r['class_index']:04d}_")
        assert common.sha256_file(pool / r["origin"]) == r["sha256"]
    # the ranking is the text-image similarity of the cached features, best first
    from susx_cli.adapters.openclip import load_model
    from susx_cli.artifacts.hdf5 import read_features

    fs = read_features(features)
    q = load_model("susx-tiny-vit", "none", device="cpu").encode_texts(["A photo of a zebra."])[0]
    best = [fs.keys[i] for i in np.argsort(-(fs.features @ q), kind="stable")[:3]]
    assert [r["origin"] for r in rows if r["class_index"] == 0] == best
    assert [r["rank"] for r in rows if r["class_index"] == 0] == [0, 1, 2]
    # a second support set from the same pool reuses the features: no second embedding
    stamp = features.stat().st_mtime_ns
    again = invoke(
        "curate",
        prompts,
        "-o",
        tmp_path / "b",
        "--source",
        "pool",
        "--pool-images",
        pool,
        "-k",
        2,
        "--prompt-mode",
        "cupl",
        *MODEL,
    )
    assert features.stat().st_mtime_ns == stamp and "up to date" in again.output
    cupl_rows = _manifest(tmp_path / "b")
    assert {r["query"] for r in cupl_rows if r["class_index"] == 0} <= set(CUPL["zebra"])
    assert cupl_rows[0]["query"] == CUPL["zebra"][0]


def test_pool_tars_match_folder(pool, tmp_path):
    """The same images as webdataset tars give the same support set (origins differ)."""
    tars = tmp_path / "tars"
    tars.mkdir()
    files = sorted(p for p in pool.rglob("*.png"))
    for t in range(2):
        with tarfile.open(tars / f"{t:05d}.tar", "w") as tar:
            for p in files[t::2]:
                data = p.read_bytes()
                info = tarfile.TarInfo(f"{p.stem}.png")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                meta = json.dumps({"caption": p.stem}).encode()
                info = tarfile.TarInfo(f"{p.stem}.json")
                info.size = len(meta)
                tar.addfile(info, io.BytesIO(meta))
    prompts = _prompts(tmp_path / "prompts.json")
    invoke(
        "curate",
        prompts,
        "-o",
        tmp_path / "f",
        "--source",
        "pool",
        "--pool-images",
        pool,
        "-k",
        3,
        "-q",
        *MODEL,
    )
    invoke(
        "curate",
        prompts,
        "-o",
        tmp_path / "t",
        "--source",
        "pool",
        "--pool-images",
        tars,
        "-k",
        3,
        "-q",
        *MODEL,
    )
    folder_rows, tar_rows = _manifest(tmp_path / "f"), _manifest(tmp_path / "t")
    assert [r["sha256"] for r in folder_rows] == [r["sha256"] for r in tar_rows]
    assert all(r["origin"].split("/")[0].endswith(".tar") for r in tar_rows)


def test_search_faiss_matches_matmul(tmp_path):
    from susx_cli.artifacts import hdf5
    from susx_cli.artifacts.schema import ModelIdentity
    from susx_cli.sources.pool import search_features

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(1000, 16)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    ident = ModelIdentity("x", None, None, 16)
    writer = hdf5.FeatureWriter(
        tmp_path / "f.h5",
        dim=16,
        items_total=1000,
        classes=[],
        model=ident,
        prov={"options": {}, "inputs": []},
    )
    writer.append(feats, np.full(1000, -1), [f"k{i}" for i in range(1000)])
    writer.finish()
    queries = feats[:3] + 0.1 * rng.normal(size=(3, 16)).astype(np.float32)
    exact = np.argsort(-(queries @ feats.T), axis=1)[:, :7]
    for method in ("faiss", "matmul"):
        scores, idx = search_features(tmp_path / "f.h5", queries, 7, method, chunk_rows=128)  # several chunks
        assert (idx == exact).all() and (np.diff(scores, axis=1) <= 0).all()


def test_pool_bad_input(tmp_path):
    prompts = _prompts(tmp_path / "prompts.json")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images here")
    r = invoke(
        "curate",
        prompts,
        "-o",
        tmp_path / "a",
        "--source",
        "pool",
        "--pool-images",
        empty,
        "-k",
        2,
        *MODEL,
        expect=2,
    )
    assert "holds no images" in r.output and not (tmp_path / "a").exists()
    r = invoke(
        "curate",
        prompts,
        "-o",
        tmp_path / "b",
        "--source",
        "pool",
        "--pool-images",
        tmp_path / "nope",
        "-k",
        2,
        *MODEL,
        expect=2,
    )
    assert "does not exist" in r.output
    r = invoke("curate", prompts, "-o", tmp_path / "c", "--source", "pool", "-k", 2, *MODEL, expect=2)
    assert "needs --pool" in r.output
    r = invoke(
        "curate", prompts, "-o", tmp_path / "d", "--source", "pool", "--pool-images", empty, *MODEL, expect=2
    )
    assert "needs --per-class" in r.output
    bad_tar = tmp_path / "t.tar"
    with tarfile.open(bad_tar, "w") as tar:
        info = tarfile.TarInfo("x.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    r = invoke(
        "curate",
        prompts,
        "-o",
        tmp_path / "e",
        "--source",
        "pool",
        "--pool-images",
        bad_tar,
        "-k",
        2,
        *MODEL,
        expect=2,
    )
    assert "holds no images" in r.output


def test_pool_sharded_needs_features_first(pool, tmp_path):
    prompts = _prompts(tmp_path / "prompts.json")
    args = ["--source", "pool", "--pool-images", pool, "-k", 2, *MODEL]
    r = invoke(
        "curate", prompts, "-o", tmp_path / "s", *args, "--num-shards", 2, "--shard-index", 0, expect=2
    )
    assert "embedded once before sharded retrieval" in r.output
    feats = tmp_path / "pool.h5"
    invoke(
        "embed",
        pool,
        "--unlabelled",
        "-o",
        feats,
        "--model",
        "susx-tiny-vit",
        "--pretrained",
        "none",
        "--device",
        "cpu",
        "-q",
    )
    for shard in (0, 1):
        invoke(
            "curate",
            prompts,
            "-o",
            tmp_path / "s",
            *args,
            "--pool-features",
            feats,
            "--num-shards",
            2,
            "--shard-index",
            shard,
        )
    single = tmp_path / "one"
    invoke("curate", prompts, "-o", single, *args, "--pool-features", feats)
    assert [r["sha256"] for r in _manifest(tmp_path / "s")] == [r["sha256"] for r in _manifest(single)]
