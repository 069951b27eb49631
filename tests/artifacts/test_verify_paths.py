"""Recorded sha256/sizes are checked where images are read, keys read from
artifacts stay inside their folder, and the same run spelled with other paths is the same run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import pytest

from tests.helpers import TINY, invoke, make_class_folders, make_image

CLASSES = ["zebra", "apple", "kiwi"]


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """prompts + a support folder of BMP images (fixed size per pixel count, so a swap can keep the size)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES))
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    for ci, name in enumerate(CLASSES):
        for j in range(2):
            make_image(
                tmp_path / "shots" / name / f"img_{j}.bmp", ci * 10 + j, (40 + 80 * ci, 90, 200 - 60 * ci)
            )
    invoke("curate", "p.json", "-o", "sup", "--images", "shots")
    return tmp_path


def _rows(sup: Path) -> list[dict]:
    return [json.loads(line) for line in (sup / "manifest.jsonl").read_text().splitlines()]


def _swap_same_size(sup: Path) -> Path:
    """Replace the first image with another BMP of the same size: only the sha256 can tell."""
    target = sup / _rows(sup)[0]["path"]
    size = target.stat().st_size
    make_image(target, 999, (250, 250, 0), fmt="BMP")
    assert target.stat().st_size == size
    return target


def _error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_embed_refuses_a_swapped_image_and_no_verify_skips_only_the_hash(ws):
    target = _swap_same_size(ws / "sup")
    r = invoke("embed", "sup", "-o", "s.h5", *TINY, expect=2)
    assert target.name in _error(r) and "does not match its manifest (sha256)" in _error(r)
    assert not (ws / "s.h5").exists()
    invoke("embed", "sup", "-o", "s.h5", "--no-verify", *TINY)  # same size: only the hash would tell
    assert (ws / "s.h5").exists()


def test_a_changed_size_is_refused_even_with_no_verify(ws):
    target = ws / "sup" / _rows(ws / "sup")[0]["path"]
    target.write_bytes(target.read_bytes() + b"\0")
    r = invoke("embed", "sup", "-o", "s.h5", "--no-verify", *TINY, expect=2)
    assert "does not match its manifest (size)" in _error(r)


def test_curate_from_a_support_folder_refuses_a_swapped_image(ws):
    _swap_same_size(ws / "sup")
    r = invoke("curate", "p.json", "-o", "sup2", "--images", "sup", expect=2)
    assert "does not match its manifest (sha256)" in _error(r)


def test_contact_sheet_refuses_a_swapped_image(ws):
    _swap_same_size(ws / "sup")
    r = invoke("inspect", "sup", "--contact-sheet", "sheet.png", expect=2)
    assert "does not match its manifest" in _error(r)
    assert not (ws / "sheet.png").exists()


def test_an_untouched_support_folder_embeds_and_copies(ws):
    invoke("embed", "sup", "-o", "s.h5", *TINY)
    invoke("curate", "p.json", "-o", "sup2", "--images", "sup")
    assert len(_rows(ws / "sup2")) == len(_rows(ws / "sup"))


@pytest.mark.parametrize("bad_key", ["../outside.png", "/etc/hostname", "a/../../x.png"])
def test_pool_feature_keys_outside_the_pool_are_refused(ws, bad_key):
    make_class_folders(ws / "pool", CLASSES, 2)
    (ws / "outside.png").write_bytes((ws / "pool" / "zebra" / "img_000.png").read_bytes())
    invoke("embed", "pool", "--unlabelled", "-o", "pool.h5", *TINY)
    with h5py.File(ws / "pool.h5", "a") as f:
        for i in range(f["keys"].shape[0]):
            f["keys"][i] = bad_key
    r = invoke(
        "curate",
        "p.json",
        "-o",
        "sup3",
        "--source",
        "pool",
        "--pool-images",
        "pool",
        "--pool-features",
        "pool.h5",
        "--per-class",
        "1",
        "--clip-model",
        "susx-tiny-vit",
        "--clip-pretrained",
        "none",
        expect=2,
    )
    assert bad_key in _error(r) and "pool" in _error(r)
    assert not list((ws / "sup3").rglob("*.png"))


# ------------------------------------------------------------------ the same run, spelled otherwise


def _up_to_date(result) -> bool:
    return "up to date" in " ".join((result.stdout + result.stderr).split())  # long paths wrap lines


def test_the_same_runs_from_another_directory_with_absolute_paths_are_up_to_date(tmp_path, monkeypatch):
    work, other = tmp_path / "work", tmp_path / "other"
    other.mkdir()
    make_class_folders(work / "shots", CLASSES, 2)
    make_class_folders(work / "pool", CLASSES, 2, seed=1)
    (work / "classes.txt").write_text("\n".join(CLASSES))
    pool_args = (
        "--source",
        "pool",
        "--per-class",
        "1",
        "--clip-model",
        "susx-tiny-vit",
        "--clip-pretrained",
        "none",
    )

    def steps(at) -> list[tuple]:
        return [
            ("prompts", "-c", at("classes.txt"), "-o", at("p.json")),
            ("curate", at("p.json"), "-o", at("sup"), "--images", at("shots")),
            (
                "curate",
                at("p.json"),
                "-o",
                at("sup-pool"),
                "--pool-images",
                at("pool"),
                "--pool-features",
                at("pool.h5"),
                *pool_args,
            ),
            ("embed", at("sup"), "-o", at("sup.h5"), *TINY),
            ("embed", at("p.json"), "-o", at("text.h5"), *TINY),
            ("embed", at("shots"), "-c", at("p.json"), "-o", at("q.h5"), *TINY),
            (
                "calibrate",
                at("text.h5"),
                at("sup.h5"),
                "-o",
                at("cal.json"),
                "--mode",
                "fixed",
                "--alpha",
                "1",
                "--beta",
                "1",
                "--gamma",
                "1",
            ),
            (
                "predict",
                at("text.h5"),
                at("q.h5"),
                "-s",
                at("sup.h5"),
                "--calibration",
                at("cal.json"),
                "-o",
                at("pred.h5"),
            ),
            (
                "predict",
                at("text.h5"),
                at("shots"),
                "-o",
                at("pred-images.h5"),
            ),  # query images embedded on the fly
        ]

    monkeypatch.chdir(work)
    for args in steps(lambda name: name):
        assert not _up_to_date(invoke(*args)), args
    monkeypatch.chdir(other)
    for args in steps(lambda name: str(work / name)):
        assert _up_to_date(invoke(*args)), args
    monkeypatch.chdir(work / "shots")  # and relative paths from another directory
    for args in steps(lambda name: os.path.join("..", name)):
        assert _up_to_date(invoke(*args)), args


def test_a_checkpoint_path_is_recorded_resolved(tmp_path, monkeypatch):
    from susx_cli.encoder import recorded_pretrained

    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "ckpt.pt").write_bytes(b"weights")
    monkeypatch.chdir(tmp_path / "w")
    here = recorded_pretrained("ckpt.pt")
    monkeypatch.chdir(tmp_path)
    assert recorded_pretrained("w/ckpt.pt") == here == recorded_pretrained(str(tmp_path / "w" / "ckpt.pt"))
    assert recorded_pretrained("openai") == "openai" and recorded_pretrained(None) == "none"


def test_a_checkpoint_is_the_same_model_by_content_whatever_its_path():
    from susx_cli.artifacts.schema import ModelIdentity

    a = ModelIdentity("RN50", "ckpt.pt", "abc", 512)
    assert a.key() == ModelIdentity("RN50", "/x/ckpt.pt", "abc", 512).key()
    assert a.key() != ModelIdentity("RN50", "ckpt.pt", "abd", 512).key()


# ------------------------------------------------------------------ a failed run does not lock its output


def test_an_unfinished_set_with_images_still_needs_overwrite_for_other_options(ws):
    invoke("curate", "p.json", "-o", "half", "--images", "shots", "--num-shards", "2", "--shard-index", "0")
    before = sorted(p.relative_to(ws).as_posix() for p in (ws / "half").rglob("*"))
    r = invoke("curate", "p.json", "-o", "half", "--images", "shots", "--shots", "1", expect=2)
    assert "other inputs or options" in _error(r)
    assert sorted(p.relative_to(ws).as_posix() for p in (ws / "half").rglob("*")) == before


def test_a_failed_set_restarts_with_the_new_options_and_drops_the_old_bookkeeping(ws):
    from susx_cli.artifacts import support

    for name in CLASSES:
        (ws / "bad" / name).mkdir(parents=True)
        (ws / "bad" / name / "x.png").write_bytes(b"not an image")
    invoke("curate", "p.json", "-o", "s", "--images", "bad", expect=2)
    stale = ws / "s" / support.PARTS / "laion-00000-of-00001" / "candidates" / "c00000.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"candidates of the failed run's options")
    invoke("curate", "p.json", "-o", "s", "--images", "shots")
    assert not stale.exists()
    done = support.read_support(ws / "s")
    assert len(done.rows) == 6 and done.provenance["options"]["images"] == str((ws / "shots").resolve())


def test_a_foreign_file_keeps_a_failed_set_from_restarting(ws):
    for name in CLASSES:
        (ws / "bad" / name).mkdir(parents=True)
        (ws / "bad" / name / "x.png").write_bytes(b"not an image")
    invoke("curate", "p.json", "-o", "s", "--images", "bad", expect=2)
    (ws / "s" / "notes.txt").write_text("the user's")
    r = invoke("curate", "p.json", "-o", "s", "--images", "shots", expect=2)
    assert "other inputs or options" in _error(r) and (ws / "s" / "notes.txt").exists()
