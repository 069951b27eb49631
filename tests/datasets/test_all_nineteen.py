"""The paper's 19 datasets are one command away: a miniature of every registered dataset under one data root
(the 7 converted ones made by `susx datasets prepare` from their download miniatures, the 12 others in their
usual CoOp / ImageNet layouts) is `ready` for `susx datasets check`, and `susx eval -d paper19 --dry-run`
plans a run for each of them."""

from __future__ import annotations

import io
import json
from pathlib import Path

from susx_cli.classnames import imagenet_wnids
from susx_cli.datasets import registry
from tests.datasets.test_prepare_datasets import (
    make_birdsnap,
    make_caltech,
    make_cifar10,
    make_cifar100,
    make_country211,
    make_cub,
    make_imagenet_r,
    prepare,
)
from tests.helpers import TINY, invoke

CLASSES = ["first class", "second class"]  # the smallest class list a CoOp split can have with a choice


def tiny_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 60, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_image(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def make_coop(data: Path, spec: registry.DatasetSpec, png: bytes) -> None:
    """CoOp's layout: ``split_zhou_*.json`` in the folder, rows relative to its image folder, one image per
    class and split."""
    folder = spec.root(data)
    image_root = folder / spec.image_dir if spec.image_dir else folder
    rows: dict[str, list] = {}
    for split in ("train", "val", "test"):
        rows[split] = []
        for label, name in enumerate(CLASSES):
            rel = f"{name.replace(' ', '_')}/{split}_0.png"
            write_image(image_root / rel, png)
            rows[split].append([rel, label, name])
    (folder / spec.split_file).write_text(json.dumps(rows))


def make_fgvc(data: Path, spec: registry.DatasetSpec, png: bytes) -> None:
    """CoOp's FGVC Aircraft: variants.txt, images_variant_{train,val,test}.txt, images/<id>.jpg."""
    folder = spec.root(data)
    folder.mkdir(parents=True)
    (folder / "variants.txt").write_text("".join(f"{v}\n" for v in ("707-320", "A300B4")))
    for k, split in enumerate(("train", "val", "test")):
        lines = []
        for j, variant in enumerate(("707-320", "A300B4")):
            image_id = f"{1000000 + 10 * k + j}"
            write_image(folder / spec.image_dir / f"{image_id}.jpg", png)
            lines.append(f"{image_id} {variant}\n")
        (folder / f"images_variant_{split}.txt").write_text("".join(lines))


def make_imagenet_folders(data: Path, spec: registry.DatasetSpec, png: bytes) -> None:
    """All 1000 WordNet-id folders with one image each: check counts the folders against ImageNet's 1000."""
    for wnid in imagenet_wnids():
        write_image(spec.root(data) / spec.image_dir / wnid / "0.png", png)


def make_converted(data: Path, downloads: Path) -> None:
    """The 7 datasets without a usual local layout: their download miniatures through `datasets prepare`."""
    make_cifar10(downloads / "cifar10")
    prepare("cifar10", downloads / "cifar10", data)
    prepare("cifar100", make_cifar100(downloads / "cifar100"), data)
    prepare("caltech256", make_caltech(downloads / "caltech256", per_class=4), data)
    make_cub(downloads / "cub")
    prepare("cub", downloads / "cub", data)
    make_birdsnap(downloads / "birdsnap")
    prepare("birdsnap", downloads / "birdsnap", data)
    make_country211(downloads / "country211")
    prepare("country211", downloads / "country211", data)
    make_imagenet_r(downloads / "imagenet-r")
    prepare("imagenet-r", downloads / "imagenet-r", data)


BUILDERS = {"coop-split": make_coop, "fgvc-variants": make_fgvc, "imagenet-folders": make_imagenet_folders}


def test_all_nineteen_are_ready_and_planned(tmp_path):
    paper19 = registry.expand_groups(["paper19"])
    assert sorted(paper19) == sorted(registry.DATASETS) and len(paper19) == 19
    data = tmp_path / "data"
    png = tiny_png()
    make_converted(data, tmp_path / "downloads")
    for spec in registry.DATASETS.values():
        if spec.layout != "split-file":
            BUILDERS[spec.layout](data, spec, png)
    assert sorted(p.name for p in data.iterdir()) == sorted(s.folder for s in registry.DATASETS.values())

    for name in paper19:
        out = invoke("datasets", "check", data, name).stdout
        assert f"{name}: ready" in out, out

    res = invoke(
        "eval", "-d", "paper19", "--data-root", data, "--model", f"{TINY[1]}:{TINY[3]}",
        "--method", "zero-shot", "--work-dir", tmp_path / "work", "--results-dir", tmp_path / "results",
        "--dry-run", "--json",
    )  # fmt: skip
    plan = json.loads(res.stdout)
    rows = plan["results"]
    assert sorted(r["dataset"] for r in rows) == sorted(paper19), rows
    assert {r["status"] for r in rows} == {"planned"}, rows
    assert not (tmp_path / "results").exists()  # a dry run writes nothing
