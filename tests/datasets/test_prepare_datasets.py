"""`susx datasets prepare`: each download layout, in its exact on-disk format and in miniature, becomes
the registry's layout; the split is checked against a computation written out here; `datasets check`
passes on the result; a rerun skips; a missing file is one line."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from susx_cli.classnames import imagenet_wnids
from susx_cli.datasets import registry
from tests.helpers import invoke

SEED = 0


def expected_split(key: str, fractions: list[tuple[str, float]], seed: int = SEED) -> str:
    """The documented seeded rule, written out independently of the code under test."""
    u = int(hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest()[:16], 16) / 2**64
    total = 0.0
    for name, fraction in fractions:
        total += fraction
        if u < total:
            return name
    return fractions[-1][0]


def jpg(path: Path, content: bytes = b"\xff\xd8 not decoded by prepare") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def prepare(name: str, source: Path, data: Path, *extra, expect: int = 0):
    return invoke("datasets", "prepare", name, "--from", source, "-o", data, *extra, expect=expect)


def prepared_split(data: Path, name: str) -> dict:
    spec = registry.get(name)
    return json.loads((spec.root(data) / spec.split_file).read_text())


def assert_ready(data: Path, name: str) -> dict:
    out = json.loads(invoke("datasets", "check", data, name, "--json").stdout)
    assert out["complete"] is True, out
    return out


def rows_of(split: dict) -> dict[str, list[tuple[str, int, str]]]:
    return {k: [tuple(r) for r in v] for k, v in split.items() if k in ("train", "val", "test")}


# --------------------------------------------------------------------------------------------------
# CIFAR


def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def make_cifar10(root: Path, per_batch: int = 2) -> tuple[Path, dict[str, list]]:
    """torchvision's cifar-10-batches-py with the real keys; returns (folder, {split: [(pixels, label)]})."""
    folder = root / "cifar-10-batches-py"
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(
        folder / "batches.meta",
        {b"label_names": [n.encode() for n in names], b"num_cases_per_batch": per_batch},
    )
    rng = np.random.default_rng(0)
    items: dict[str, list] = {"train": [], "test": []}
    for name, split, labels in [
        (f"data_batch_{i}", "train", [(2 * i + j) % 10 for j in range(per_batch)]) for i in range(1, 6)
    ] + [("test_batch", "test", list(range(10)))]:
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        _pickle(
            folder / name,
            {
                b"batch_label": name.encode(),
                b"labels": labels,
                b"data": data,
                b"filenames": [f"img_{k}.png".encode() for k in range(len(labels))],
            },
        )
        items[split] += list(zip(data, labels, strict=True))
    return folder, items


def test_cifar10_pickles_become_pngs(tmp_path):
    from PIL import Image

    _, items = make_cifar10(tmp_path / "dl")
    data = tmp_path / "data"
    prepare("cifar10", tmp_path / "dl", data)
    split = prepared_split(data, "cifar10")
    names = registry.class_names("cifar10")
    for name in ("train", "test"):
        expected = [
            (f"images/{name}/{i:05d}.png", label, names[label]) for i, (_, label) in enumerate(items[name])
        ]
        assert rows_of(split)[name] == expected
        for (rel, _, _), (pixels, _) in zip(split[name], items[name], strict=True):
            image = np.asarray(Image.open(data / "cifar10" / rel))
            assert image.shape == (32, 32, 3)
            assert np.array_equal(image[..., 0].ravel(), pixels[:1024])  # red plane first
            assert np.array_equal(image[..., 2].ravel(), pixels[2048:])
    assert split["prepared"]["split"]["method"] == "official"
    assert_ready(data, "cifar10")

    # an identical rerun skips and rewrites nothing
    before = {p: p.stat().st_mtime_ns for p in (data / "cifar10").rglob("*")}
    out = json.loads(prepare("cifar10", tmp_path / "dl", data, "--json").stdout)
    assert out["skipped"] is True
    assert {p: p.stat().st_mtime_ns for p in (data / "cifar10").rglob("*")} == before


def test_cifar_interrupted_write_out_resumes_and_never_looks_complete(tmp_path, monkeypatch):
    from susx_cli.artifacts import prepared

    make_cifar10(tmp_path / "dl")
    data = tmp_path / "data"
    real = prepared.write_image
    calls = {"n": 0}

    def failing(path, blob):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(path, blob)

    monkeypatch.setattr(prepared, "write_image", failing)
    invoke("datasets", "prepare", "cifar10", "--from", tmp_path / "dl", "-o", data, expect=130)
    monkeypatch.setattr(prepared, "write_image", real)
    assert not (data / "cifar10" / "split_susx_CIFAR10.json").exists()
    bad = invoke("datasets", "check", data, "cifar10", expect=2)
    assert "split_susx_CIFAR10.json is missing" in bad.stderr
    kept = sorted((data / "cifar10" / "images").rglob("*.png"))
    assert len(kept) == 6
    out = json.loads(prepare("cifar10", tmp_path / "dl", data, "--json").stdout)
    assert out["summary"]["images_written"] == 20 - 6  # resumed: the six written before are kept
    assert_ready(data, "cifar10")


def test_cifar_incomplete_marker_is_not_ready(tmp_path):
    from susx_cli.artifacts import prepared

    make_cifar10(tmp_path / "dl")
    data = tmp_path / "data"
    prepare("cifar10", tmp_path / "dl", data)
    marker = json.loads((data / "cifar10" / prepared.MARKER).read_text())
    marker["complete"] = False
    (data / "cifar10" / prepared.MARKER).write_text(json.dumps(marker))
    bad = invoke("datasets", "check", data, "cifar10", expect=1)
    assert "did not finish" in bad.stderr


def make_cifar100(root: Path) -> Path:
    """torchvision's cifar-100-python: fine labels 7, 3 in train, every class once in test."""
    folder = root / "cifar-100-python"
    names = [f"class_{i}_name" for i in range(100)]
    _pickle(
        folder / "meta", {b"fine_label_names": [n.encode() for n in names], b"coarse_label_names": [b"x"]}
    )
    rng = np.random.default_rng(1)
    for name, labels in (("train", [7, 3]), ("test", list(range(100)))):
        _pickle(
            folder / name,
            {
                b"fine_labels": labels,
                b"coarse_labels": [0] * len(labels),
                b"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8),
                b"filenames": [b"f.png"] * len(labels),
            },
        )
    return folder


def test_cifar100_fine_labels(tmp_path):
    folder = make_cifar100(tmp_path / "dl")
    data = tmp_path / "data"
    prepare("cifar100", folder, data)  # --from the batches folder itself works too
    split = prepared_split(data, "cifar100")
    assert rows_of(split)["train"] == [
        ("images/train/00000.png", 7, "class 7 name"),
        ("images/train/00001.png", 3, "class 3 name"),
    ]
    assert assert_ready(data, "cifar100")["classes"] == 100


def test_cifar_missing_or_damaged_batch_is_one_line(tmp_path):
    folder, _ = make_cifar10(tmp_path / "dl")
    (folder / "data_batch_3").unlink()
    bad = prepare("cifar10", tmp_path / "dl", tmp_path / "data", expect=2)
    assert "data_batch_3 is missing" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    (folder / "data_batch_3").write_bytes((folder / "data_batch_2").read_bytes()[:100])
    bad = prepare("cifar10", tmp_path / "dl", tmp_path / "data", expect=2)
    assert "data_batch_3" in bad.stderr and "damaged" in bad.stderr
    assert not (tmp_path / "data").exists()  # nothing written


def test_cifar_pickle_that_runs_code_is_refused(tmp_path):
    folder, _ = make_cifar10(tmp_path / "dl")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    bad = prepare("cifar10", tmp_path / "dl", tmp_path / "data", expect=2)
    assert "damaged" in bad.stderr


# --------------------------------------------------------------------------------------------------
# Caltech-256


CALTECH = ["001.ak47", "002.american-flag", "003.airplanes-101", "004.t_shirt"]


def make_caltech(root: Path, per_class: int = 12) -> Path:
    images = root / "256_ObjectCategories"
    for folder in [*CALTECH, "257.clutter"]:
        for j in range(per_class):
            jpg(images / folder / f"{folder[:3]}_{j:04d}.jpg")
    return root


def test_caltech256_seeded_split_without_clutter(tmp_path):
    make_caltech(tmp_path / "dl")
    data = tmp_path / "data"
    prepare("caltech256", tmp_path / "dl", data)
    split = prepared_split(data, "caltech256")
    names = ["ak47", "american flag", "airplanes", "t shirt"]
    fractions = [("train", 0.5), ("val", 0.2), ("test", 0.3)]
    expected: dict[str, list] = {"train": [], "val": [], "test": []}
    for label, folder in enumerate(CALTECH):
        for j in range(12):
            key = f"{folder}/{folder[:3]}_{j:04d}.jpg"
            expected[expected_split(key, fractions)].append(
                (f"source/256_ObjectCategories/{key}", label, names[label])
            )
    assert rows_of(split) == expected
    assert split["prepared"]["split"]["fractions"] == dict(fractions)
    assert not any("clutter" in r[0] for rows in rows_of(split).values() for r in rows)
    assert (data / "caltech256" / "source").resolve() == (tmp_path / "dl").resolve()
    assert_ready(data, "caltech256")
    # another seed is another split, and replacing the prepared one needs --overwrite
    bad = prepare("caltech256", tmp_path / "dl", data, "--seed", "1", expect=2)
    assert "--overwrite" in bad.stderr
    prepare("caltech256", tmp_path / "dl", data, "--seed", "1", "--overwrite")
    assert rows_of(prepared_split(data, "caltech256")) != expected


def test_caltech256_published_split_is_reproduced(tmp_path):
    make_caltech(tmp_path / "dl", per_class=3)
    rows = {
        "train": [
            ["256_ObjectCategories/001.ak47/001_0000.jpg", 0, "ak47"],
            ["256_ObjectCategories/002.american-flag/002_0001.jpg", 1, "american-flag"],
        ],
        "val": [["256_ObjectCategories/003.airplanes-101/003_0002.jpg", 2, "airplanes-101"]],
        "test": [
            ["256_ObjectCategories/004.t_shirt/004_0000.jpg", 3, "t-shirt"],
            ["256_ObjectCategories/001.ak47/001_0002.jpg", 0, "ak47"],
        ],
    }
    published = tmp_path / "split_Caltech256.json"
    published.write_text(json.dumps(rows))
    data = tmp_path / "data"
    prepare("caltech256", tmp_path / "dl", data, "--split-file", published)
    split = prepared_split(data, "caltech256")
    assert rows_of(split) == {
        k: [(f"source/{p}", label, name) for p, label, name in v] for k, v in rows.items()
    }
    assert split["prepared"]["split"]["method"] == "published"
    assert_ready(data, "caltech256")
    bad = prepare("cifar10", tmp_path / "dl", tmp_path / "d2", "--split-file", published, expect=2)
    assert "published no split" in bad.stderr


def test_caltech256_gap_in_class_folders_is_one_line(tmp_path):
    make_caltech(tmp_path / "dl")
    import shutil

    shutil.rmtree(tmp_path / "dl" / "256_ObjectCategories" / "002.american-flag")
    bad = prepare("caltech256", tmp_path / "dl", tmp_path / "data", expect=2)
    assert "number 002" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------------
# CUB-200-2011


def make_cub(root: Path) -> tuple[Path, list[tuple[str, int, int]]]:
    cub = root / "CUB_200_2011"
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    images = []
    for i in range(1, 31):
        cls = (i - 1) % 3 + 1
        images.append((f"{classes[cls - 1]}/{classes[cls - 1][4:]}_{i:04d}_{i}.jpg", cls, 1 if i % 3 else 0))
    cub.mkdir(parents=True)
    (cub / "classes.txt").write_text("".join(f"{k + 1} {c}\n" for k, c in enumerate(classes)))
    (cub / "images.txt").write_text("".join(f"{i + 1} {p}\n" for i, (p, _, _) in enumerate(images)))
    (cub / "image_class_labels.txt").write_text(
        "".join(f"{i + 1} {c}\n" for i, (_, c, _) in enumerate(images))
    )
    (cub / "train_test_split.txt").write_text("".join(f"{i + 1} {t}\n" for i, (_, _, t) in enumerate(images)))
    for path, _, _ in images:
        jpg(cub / "images" / path)
    return cub, images


def test_cub_official_test_and_seeded_val(tmp_path):
    cub, images = make_cub(tmp_path / "dl")
    data = tmp_path / "data"
    prepare("cub", tmp_path / "dl", data)
    names = ["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"]
    expected: dict[str, list] = {"train": [], "val": [], "test": []}
    for path, cls, is_train in images:
        split = expected_split(path, [("train", 0.8), ("val", 0.2)]) if is_train else "test"
        expected[split].append((f"source/CUB_200_2011/images/{path}", cls - 1, names[cls - 1]))
    assert rows_of(prepared_split(data, "cub")) == expected
    assert_ready(data, "cub")


def test_cub_prepared_in_place(tmp_path):
    """The download extracted into the data root's own folder: rows point into it, no link."""
    data = tmp_path / "data"
    make_cub(data / "cub")
    prepare("cub", data / "cub", data)
    split = prepared_split(data, "cub")
    assert split["test"][0][0].startswith("CUB_200_2011/images/")
    assert not (data / "cub" / "source").exists()
    assert_ready(data, "cub")
    assert json.loads(prepare("cub", data / "cub", data, "--json").stdout)["skipped"] is True


def test_cub_missing_text_file_or_image_is_one_line(tmp_path):
    cub, images = make_cub(tmp_path / "dl")
    (cub / "images" / images[4][0]).unlink()
    bad = prepare("cub", tmp_path / "dl", tmp_path / "data", expect=2)
    assert "1 of 30 images" in bad.stderr and images[4][0] in bad.stderr
    (cub / "train_test_split.txt").unlink()
    bad = prepare("cub", tmp_path / "dl", tmp_path / "data", expect=2)
    assert "train_test_split.txt is missing" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()


# --------------------------------------------------------------------------------------------------
# Birdsnap


def make_birdsnap(root: Path) -> list[tuple[str, int]]:
    root.mkdir(parents=True)
    species = [
        ("1", "Acadian Flycatcher", "Empidonax virescens", "Acadian_Flycatcher"),
        ("2", "Acorn Woodpecker", "Melanerpes formicivorus", "Acorn_Woodpecker"),
    ]
    (root / "species.txt").write_text(
        "id\tcommon\tscientific\tdir\n" + "".join("\t".join(s) + "\n" for s in species)
    )
    images = [(f"{species[k % 2][3]}/{k:03d}.jpg", k % 2 + 1) for k in range(16)]
    header = "url\tmd5\tpath\tspecies_id\tbb_x1\tbb_y1\tbb_x2\tbb_y2\n"
    (root / "images.txt").write_text(
        header + "".join(f"http://x/{k}.jpg\tmd5\t{p}\t{s}\t1\t2\t3\t4\n" for k, (p, s) in enumerate(images))
    )
    (root / "test_images.txt").write_text("path\n" + "".join(f"{p}\n" for p, _ in images[:4]))
    for path, _ in images:
        jpg(root / "images" / path)
    return images


def test_birdsnap_missing_images_are_counted_and_listed(tmp_path):
    images = make_birdsnap(tmp_path / "dl")
    gone = [images[1][0], images[9][0]]
    for path in gone:
        (tmp_path / "dl" / "images" / path).unlink()
    data = tmp_path / "data"
    res = prepare("birdsnap", tmp_path / "dl", data)
    assert "2 image(s)" in res.stderr and gone[0] in res.stderr
    split = prepared_split(data, "birdsnap")
    assert split["prepared"]["missing"] == sorted(gone)
    assert split["prepared"]["counts"]["missing"] == 2
    names = ["Acadian Flycatcher", "Acorn Woodpecker"]
    expected: dict[str, list] = {"train": [], "val": [], "test": []}
    for k, (path, sid) in sorted(enumerate(images), key=lambda t: t[1][0]):
        if path in gone:
            continue
        name = "test" if k < 4 else expected_split(path, [("train", 0.8), ("val", 0.2)])
        expected[name].append((f"source/images/{path}", sid - 1, names[sid - 1]))
    assert rows_of(split) == expected
    assert_ready(data, "birdsnap")


def test_birdsnap_missing_list_is_one_line(tmp_path):
    make_birdsnap(tmp_path / "dl")
    (tmp_path / "dl" / "test_images.txt").unlink()
    bad = prepare("birdsnap", tmp_path / "dl", tmp_path / "data", expect=2)
    assert "test_images.txt is missing" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------------
# Country211


COUNTRY_CODES = ["AD", "FR", "US"]


def make_country211(root: Path) -> Path:
    """torchvision's country211/{train,valid,test}/<ISO code>/, two images per code and split."""
    for folder in ("train", "valid", "test"):
        for code in COUNTRY_CODES:
            for j in range(2):
                jpg(root / "country211" / folder / code / f"{j}.jpg")
    return root / "country211"


def test_country211_iso_folders(tmp_path):
    root = make_country211(tmp_path / "dl")
    codes = COUNTRY_CODES
    data = tmp_path / "data"
    prepare("country211", tmp_path / "dl", data)
    split = prepared_split(data, "country211")
    names = ["Andorra", "France", "United States"]
    for name, folder in (("train", "train"), ("val", "valid"), ("test", "test")):
        assert rows_of(split)[name] == [
            (f"source/country211/{folder}/{code}/{j}.jpg", label, names[label])
            for label, code in enumerate(codes)
            for j in range(2)
        ]
    assert_ready(data, "country211")
    import shutil

    shutil.rmtree(root / "valid" / "FR")
    bad = prepare("country211", tmp_path / "dl", tmp_path / "d2", expect=2)
    assert "valid/ country folder(s) FR" in bad.stderr


def test_country_names_cover_iso_3166():
    from susx_cli.datasets.prepare.country211 import country_names

    names = country_names()
    assert len(names) == 250  # 249 assigned alpha-2 codes + XK
    assert all(len(c) == 2 and c.isupper() for c in names)
    assert len(set(names.values())) == len(names)


# --------------------------------------------------------------------------------------------------
# ImageNet-R


def make_imagenet_r(root: Path) -> list[str]:
    """imagenet-r/<wnid>/ for three ImageNet classes (one with a renamed repeated name), two images each;
    returns the chosen WordNet ids."""
    wnids = imagenet_wnids()
    chosen = [wnids[1], wnids[744], wnids[5]]
    for w in chosen:
        for j in range(2):
            jpg(root / "imagenet-r" / w / f"art_{j}.jpg")
    return chosen


def test_imagenet_r_wordnet_folders(tmp_path):
    wnids = imagenet_wnids()
    chosen = make_imagenet_r(tmp_path / "dl")
    data = tmp_path / "data"
    prepare("imagenet-r", tmp_path / "dl", data)
    names = registry.class_names("imagenet")
    expected = [
        (f"source/imagenet-r/{w}/art_{j}.jpg", label, names[wnids.index(w)])
        for label, w in enumerate(sorted(chosen))
        for j in range(2)
    ]
    split = prepared_split(data, "imagenet-r")
    assert rows_of(split) == {"test": expected}
    assert "projectile" in [r[2] for r in expected]  # the registry's rename of a repeated name
    assert_ready(data, "imagenet-r")


# --------------------------------------------------------------------------------------------------
# Safety


def test_prepare_refuses_a_split_file_it_did_not_write(tmp_path):
    make_caltech(tmp_path / "dl", per_class=3)
    folder = tmp_path / "data" / "caltech256"
    folder.mkdir(parents=True)
    (folder / "split_susx_Caltech256.json").write_text("{}")
    bad = prepare("caltech256", tmp_path / "dl", tmp_path / "data", expect=2)
    assert "not written by susx datasets prepare" in bad.stderr
    assert (folder / "split_susx_Caltech256.json").read_text() == "{}"


@pytest.mark.parametrize("name", ["dtd", "imagenet"])
def test_datasets_read_from_their_usual_layout_need_no_prepare(tmp_path, name):
    bad = prepare(name, tmp_path, tmp_path / "data", expect=2)
    assert "needs no prepare" in bad.stderr


def test_every_split_file_dataset_has_a_converter():
    from susx_cli.datasets.prepare import CONVERTERS

    assert {s.id for s in registry.DATASETS.values() if s.layout == "split-file"} == set(CONVERTERS)


def test_eval_runs_on_a_prepared_dataset(tmp_path):
    """The prepared layout is what eval reads: zero-shot with the tiny model on prepared CIFAR-10 and on
    Caltech-256 through the link to its download (rows under source/)."""
    from PIL import Image

    from tests.helpers import TINY

    make_cifar10(tmp_path / "dl")
    dl = tmp_path / "caltech"
    for folder in [*CALTECH, "257.clutter"]:
        for j in range(12):
            path = dl / "256_ObjectCategories" / folder / f"{j}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (j * 20, 40, 90)).save(path)
    data = tmp_path / "data"
    prepare("cifar10", tmp_path / "dl", data)
    prepare("caltech256", dl, data)
    res = invoke(
        "eval", "-d", "cifar10", "-d", "caltech256", "--data-root", data, "--model", f"{TINY[1]}:{TINY[3]}",
        "--method", "zero-shot", "--work-dir", tmp_path / "work", "--results-dir", tmp_path / "results",
        "--workers", "0", "--json",
    )  # fmt: skip
    results = sorted((tmp_path / "results").glob("*.json"))
    assert [p.name.split("__")[0] for p in results] == ["caltech256", "cifar10"], res.stdout


def test_prepare_keeps_an_images_folder_it_did_not_write(tmp_path):
    make_cifar10(tmp_path / "dl")
    theirs = tmp_path / "data" / "cifar10" / "images" / "train" / "00000.png"
    jpg(theirs, b"the user's own file")
    bad = prepare("cifar10", tmp_path / "dl", tmp_path / "data", expect=2)
    assert "not written by susx datasets prepare" in bad.stderr
    assert theirs.read_bytes() == b"the user's own file"


def test_empty_download_is_one_line_naming_the_layout(tmp_path):
    (tmp_path / "dl").mkdir()
    for name, what in [
        ("imagenet-r", "imagenet-r/ (WordNet-id folders) is missing"),
        ("country211", "train/ and valid/ and test/ is missing"),
        ("caltech256", "256_ObjectCategories/ (folders NNN.name) is missing"),
        ("cifar100", "cifar-100-python/meta is missing"),
        ("cub", "CUB_200_2011/images.txt is missing"),
        ("birdsnap", "species.txt is missing"),
    ]:
        bad = prepare(name, tmp_path / "dl", tmp_path / "data", expect=2)
        assert what in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    bad = prepare("cub", tmp_path / "nowhere", tmp_path / "data", expect=2)
    assert "is not a folder" in bad.stderr
    assert not (tmp_path / "data").exists()


def test_fewer_classes_than_the_paper_is_warned(tmp_path):
    make_caltech(tmp_path / "dl", per_class=3)
    res = prepare("caltech256", tmp_path / "dl", tmp_path / "data")
    assert "4 classes here, the registry's Caltech256 has 256 (a partial download?)" in res.stderr


def test_cifar_label_out_of_range_is_one_line(tmp_path):
    folder, _ = make_cifar10(tmp_path / "dl")
    batch = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")
    batch[b"labels"][3] = 10
    _pickle(folder / "test_batch", batch)
    bad = prepare("cifar10", tmp_path / "dl", tmp_path / "data", expect=2)
    assert "test_batch has labels outside 0..9" in bad.stderr


def test_caltech256_with_only_the_clutter_class_is_one_line(tmp_path):
    jpg(tmp_path / "dl" / "256_ObjectCategories" / "257.clutter" / "257_0001.jpg")
    bad = prepare("caltech256", tmp_path / "dl", tmp_path / "data", expect=2)
    assert "number 001" in bad.stderr


def test_overwrite_removes_only_the_images_prepare_wrote(tmp_path):
    """--overwrite clears the images the earlier prepare's split file names; a file of the user's in
    images/ is refused, never removed."""
    make_cifar10(tmp_path / "dl-a")
    make_cifar10(tmp_path / "dl-b", per_batch=3)  # another download
    data = tmp_path / "data"
    prepare("cifar10", tmp_path / "dl-a", data)
    folder = data / registry.get("cifar10").folder
    notes = folder / "images" / "notes.txt"
    notes.write_text("mine")
    before = sorted(p.name for p in (folder / "images").rglob("*.png"))
    bad = prepare("cifar10", tmp_path / "dl-b", data, "--overwrite", expect=2)
    assert "notes.txt" in bad.stderr and "will not remove" in bad.stderr and notes.read_text() == "mine"
    assert sorted(p.name for p in (folder / "images").rglob("*.png")) == before  # nothing removed
    notes.unlink()
    prepare("cifar10", tmp_path / "dl-b", data, "--overwrite")
    split = prepared_split(data, "cifar10")
    assert len(split["train"]) == 15 and all((folder / row[0]).is_file() for row in split["train"])
    assert_ready(data, "cifar10")
