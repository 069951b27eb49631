"""Guard rails between stages: a support set that nothing reads, a flat folder of query images, and
`export`'s identical rerun and standard output."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest

from susx_cli.artifacts import hdf5
from tests.helpers import build_method_workspace, class_color, invoke, make_image, read_susx_csv

CLASSES = ["zebra", "apple", "mango"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 3-shot workspace (tests/helpers.build_method_workspace) plus zero-shot predictions."""
    root = build_method_workspace(tmp_path_factory.mktemp("guards"), CLASSES, val=1, test=2)
    old = Path.cwd()
    os.chdir(root)
    try:
        invoke("predict", "text.h5", "test.h5", "-o", "zs.h5")
    finally:
        os.chdir(old)
    return root


@pytest.fixture()
def w(built, monkeypatch):
    monkeypatch.chdir(built)
    return built


def test_support_without_calibration_or_method_is_refused(w):
    bad = invoke("predict", "text.h5", "test.h5", "-s", "sup.h5", "-o", "p.h5", expect=2)
    assert bad.stderr.startswith("error:") and "zero-shot" in bad.stderr and "--calibration" in bad.stderr
    assert "Traceback" not in bad.stderr and not (w / "p.h5").exists()
    # naming zero-shot does not make an unread support set acceptable either
    bad = invoke(
        "predict", "text.h5", "test.h5", "-s", "sup.h5", "--method", "zero-shot", "-o", "p.h5", expect=2
    )
    assert "reads no support set" in bad.stderr and not (w / "p.h5").exists()
    invoke("predict", "text.h5", "test.h5", "--method", "zero-shot", "-o", "p.h5")


def test_predict_treats_a_flat_image_folder_as_unlabelled(w):
    flat = w / "photos"
    for i in range(3):
        make_image(flat / f"photo_{i}.jpg", 50 + i, class_color(i), fmt="JPEG")
    invoke("predict", "text.h5", flat, "-o", "flat.h5")
    preds = hdf5.read_predictions(w / "flat.h5")
    assert sorted(preds.keys) == ["photo_0.jpg", "photo_1.jpg", "photo_2.jpg"]
    assert (preds.labels == -1).all() and "top1" not in preds.metrics
    # embed with a class list reads the same folder the same way
    invoke(
        "embed",
        flat,
        "-c",
        "p.json",
        "-o",
        "flat-embed.h5",
        "--model",
        "susx-tiny-vit",
        "--pretrained",
        "none",
    )
    assert sorted(hdf5.read_features(w / "flat-embed.h5").keys) == sorted(preds.keys)


def test_export_skips_an_identical_rerun_and_writes_to_stdout(w):
    (w / "zs.csv").unlink(missing_ok=True)
    invoke("export", "zs.h5", "-o", "zs.csv")
    before = (w / "zs.csv").stat().st_mtime_ns, (w / "zs.csv").read_bytes()
    again = invoke("export", "zs.h5", "-o", "zs.csv")
    assert again.stdout.strip() == "zs.csv"
    assert ((w / "zs.csv").stat().st_mtime_ns, (w / "zs.csv").read_bytes()) == before
    out = invoke("export", "zs.h5", "-o", "-")
    rows = list(csv.reader(io.StringIO(out.stdout)))
    # the same table, without the file's mark line, and nothing else on stdout
    assert rows == read_susx_csv(w / "zs.csv", "susx.predictions_csv")
    assert not (w / "-").exists()
    bad = invoke("export", "zs.h5", "-o", "-", "--json", expect=2)
    assert "--json" in bad.stderr and not bad.stdout
