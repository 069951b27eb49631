"""Pictures that answer questions. Contact sheets of every class in pages, few-shot curves
in report charts, the chosen point on the calibration heat map. Text cannot be read back from pixels, so
each drawing returns a description (titles, page classes, series, the marked point) that is asserted here
beside the PNG itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import invoke, make_class_folders

PNG = b"\x89PNG\r\n\x1a\n"
CLASSES = ["zebra", "apple", "kiwi", "mango", "plum", "pear", "fig"]


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    assert path.read_bytes()[:8] == PNG
    with Image.open(path) as im:
        return im.size


@pytest.fixture
def sup(tmp_path, monkeypatch):
    """A folder-source support set: 7 classes of 3 images (32 px) each."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES))
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    make_class_folders(tmp_path / "shots", CLASSES, 3)
    invoke("curate", "p.json", "-o", "sup", "--images", "shots")
    return tmp_path


def _sheet(*args) -> dict:
    return json.loads(invoke("inspect", "sup", "--contact-sheet", *args, "--json").stdout)["contact_sheet"]


def test_contact_sheet_pages_cover_every_class(sup):
    r = invoke("inspect", "sup", "--contact-sheet", "sheet.png", "--classes-per-page", "3")
    assert r.stdout.splitlines() == [
        "sheet-001.png",
        "sheet-002.png",
        "sheet-003.png",
    ]  # each alone on a line
    pages = [sup / f"sheet-00{i}.png" for i in (1, 2, 3)]
    assert not (sup / "sheet.png").exists() and not (sup / "sheet-004.png").exists()
    described = _sheet("sheet.png", "--classes-per-page", "3")
    assert [p["classes"] for p in described["pages"]] == [CLASSES[0:3], CLASSES[3:6], CLASSES[6:]]
    # Columns fit the 3 images per class (the default cap is 8); 32 px images are drawn in 128 px cells.
    assert described["columns"] == 3 and described["thumb"] == 128 >= 96
    assert "nearest" in described["resample"] and "bicubic" in described["resample"]
    for number, (page, path) in enumerate(zip(described["pages"], pages, strict=True), start=1):
        title = page["title"]
        assert title[0] == "support set sup: source folder"  # a folder source records no model
        assert title[1] == "3 images per class; 21 images, 7 classes"
        assert title[2].startswith(f"page {number} of 3: all 7 classes, classes {3 * (number - 1)}-")
        assert "up to 3 images per class" in title[3] and "images 32x32 px" in title[3]
        assert _png_size(path) == tuple(page["size"])
        assert page["size"][1] == page["rows_top"] + len(page["classes"]) * page["row_height"]
        # Each image's key (the one embed writes and --exclude reads) is printed under it: 128 px cells,
        # a 4 px gap and at least one caption line.
        assert page["row_height"] > 128 + 4
        assert page["keys"] == [
            [f"{CLASSES.index(c):04d}_{c}/{i:05d}_img_{i:03d}.png" for i in range(3)] for c in page["classes"]
        ]


def test_contact_sheet_enlarges_small_images_with_visible_pixels(sup):
    from PIL import Image

    (page,) = _sheet("one.png", "--classes", "kiwi")["pages"]
    with Image.open(sup / "one.png") as im:
        grid = np.asarray(im.convert("RGB"))
    first = json.loads((sup / "sup" / "manifest.jsonl").read_text().splitlines()[6])  # kiwi's first image
    assert first["class_name"] == "kiwi"
    with Image.open(sup / "sup" / first["path"]) as im:
        pixels = np.asarray(im.convert("RGB"))
    y, x = page["rows_top"], 220
    assert np.array_equal(grid[y : y + 128, x : x + 128], np.repeat(np.repeat(pixels, 4, axis=0), 4, axis=1))


def test_contact_sheet_of_chosen_classes_in_the_given_order(sup):
    described = _sheet("pick.png", "--classes", "Kiwi, 0,kiwi", "--per-class", "2")
    (page,) = described["pages"]
    assert page["classes"] == ["kiwi", "zebra"] and page["path"] == "pick.png"
    assert described["columns"] == 2  # --per-class caps the columns
    assert page["title"][2] == "page 1 of 1: 2 of 7 classes"
    assert _png_size(sup / "pick.png") == (
        640,
        page["rows_top"] + 2 * page["row_height"],
    )  # narrow sheets keep room for the title
    (sup / "wanted.txt").write_text("# the fruit\nfig\nplum\n")
    assert _sheet("file.png", "--classes", "wanted.txt")["pages"][0]["classes"] == ["fig", "plum"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--contact-sheet", "x.png", "--classes", "zebra,durian"), "'durian' names no class"),
        (("--contact-sheet", "x.png", "--classes-per-page", "0"), "--classes-per-page must be at least 1"),
        (
            (
                "--classes",
                "zebra",
            ),
            "add --contact-sheet",
        ),
    ],
)
def test_contact_sheet_refuses_bad_choices(sup, args, needle):
    r = invoke("inspect", "sup", *args, expect=2)
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not list(sup.glob("x*.png"))


def test_a_refused_image_leaves_no_page(sup):
    last = json.loads((sup / "sup" / "manifest.jsonl").read_text().splitlines()[-1])
    target = sup / "sup" / last["path"]
    target.write_bytes(target.read_bytes() + b"\0")  # on the last page only
    r = invoke("inspect", "sup", "--contact-sheet", "sheet.png", "--classes-per-page", "3", expect=2)
    assert "does not match its manifest (size)" in r.stderr
    assert not list(sup.glob("sheet*")) and not list(sup.glob(".sheet*"))


def test_source_and_model_in_the_title():
    from susx_cli.stages.inspect import count_phrase, size_phrase, source_and_model

    assert source_and_model({"source": "pool", "model": "ViT-B-32", "pretrained": "openai"}) == (
        "pool",
        "ViT-B-32 (openai)",
    )
    assert source_and_model({"source": "sd", "model": "stabilityai/sd-turbo"}) == (
        "sd",
        "stabilityai/sd-turbo",
    )
    assert source_and_model({"source": "laion", "captions": {"model": "RN50", "pretrained": None}}) == (
        "laion",
        "RN50",
    )
    assert source_and_model({"source": "laion", "knn": {"index_name": "laion5B-L-14"}}) == (
        "laion",
        "kNN index laion5B-L-14",
    )
    assert source_and_model({"source": "folder"}) == ("folder", None)
    assert count_phrase([2, 4, 3]) == "2-4 (mean 3.0) images per class; 9 images, 3 classes"
    assert size_phrase([(32, 32), (64, 48), (32, 32)]) == "32x32 to 64x48 px"


# ------------------------------------------------------------------ report charts


def _result(
    dataset: str,
    method: str,
    top1: float,
    *,
    shots: int | None = None,
    mode: str | None = None,
    source: str | None = None,
    random: bool = True,
) -> dict:
    support = None
    if shots is not None:
        support = {"kind": "folder-shots", "shots": shots}
    elif source is not None:
        support = {"kind": "folder", "source": source, "path": f"sus-{source}"}
    config = {"dataset": dataset, "method": method, "support": support, "mode": mode}
    return {
        "config": config,
        "config_key": json.dumps(config, sort_keys=True),
        "dataset": {"id": dataset, "name": dataset, "split": "test"},
        "model": {"arch": "RN50", "pretrained": "openai", "random_weights": random},
        "method": method,
        "support": support,
        "calibration": {"mode": mode} if mode else None,
        "zero_shot_protocol": {"logit_scale": 100.0, "text_pool": "template", "templates": "openai"},
        "metrics": {"top1": top1},
    }


def _few_shot_results(random: bool = True) -> list[dict]:
    out = []
    for ds in ("eurosat", "dtd"):
        out.append(_result(ds, "zero-shot", 40.0, random=random))
        for method in ("tip-adapter", "tip-x"):
            for mode in ("loo", "val"):
                for k in (16, 1, 4, 2):  # written out of order: the curve sorts them
                    value = (
                        40 + 3 * np.log2(k) + (2 if method == "tip-x" else 0) + (1 if mode == "val" else 0)
                    )
                    out.append(_result(ds, method, float(value), shots=k, mode=mode, random=random))
    return out


def test_few_shot_series_per_method_and_mode_sorted_by_shots():
    from susx_cli.stages.report import build_report, shot_panels

    panels = shot_panels(build_report(_few_shot_results()))
    assert [p.dataset for p in panels] == ["DTD", "EuroSAT"]
    for panel in panels:
        assert {(s.method, s.mode) for s in panel.series} == {
            (m, c) for m in ("tip-adapter", "tip-x") for c in ("loo", "val")
        }
        for s in panel.series:
            assert s.shots == [1, 2, 4, 16]
            bonus = (2 if s.method == "tip-x" else 0) + (1 if s.mode == "val" else 0)
            assert s.values == pytest.approx([40 + 3 * np.log2(k) + bonus for k in s.shots])
        assert panel.baselines == [("Zero-shot CLIP", 40.0, "zero-shot")]


def _assert_readable(layout: dict) -> None:
    """Every drawn text lies inside the figure, and no two tick labels of one axis overlap."""
    width, height = layout["size"]
    for t in layout["texts"]:
        x0, y0, x1, y1 = t["box"]
        assert -0.5 <= x0 and x1 <= width + 0.5 and -0.5 <= y0 and y1 <= height + 0.5, t
    for role in ("xtick", "ytick"):
        for axes in {t["axes"] for t in layout["texts"]}:
            boxes = [t["box"] for t in layout["texts"] if t["role"] == role and t["axes"] == axes]
            for a, b in zip(boxes, boxes[1:], strict=False):  # neighbours
                apart = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
                assert apart, (role, a, b)


def test_shot_curves_colour_and_mark_by_method_and_style_by_mode(tmp_path):
    pytest.importorskip("matplotlib")
    from susx_cli.method import registry
    from susx_cli.stages.report import build_report, draw_charts, random_note

    results = _few_shot_results()
    ((path, described),) = draw_charts(
        build_report(results), tmp_path / "c.png", "top1", random_note(results)
    )
    assert path == tmp_path / "c.png" and _png_size(path)[0] > 0
    assert described.kind == "shot-curves" and "over shots" in described.title
    assert described.note.startswith("RANDOM weights (every result)")
    series = [s for p in described.panels for s in p["series"]]
    for s in series:  # the method's colour and marker, read from its spec, on every panel
        spec = registry.get(s["method"])
        assert s["color"] == spec.color and s["marker"] in (spec.marker, None)
    style = {s["mode"]: s["linestyle"] for s in series if s["method"] != "zero-shot"}
    assert len(set(style.values())) == 2
    assert all(s["linestyle"] == style[s["mode"]] for s in series if s["method"] != "zero-shot")
    assert all(s["x"] == [1, 2, 4, 16] for s in series if s["method"] != "zero-shot")
    # The legend, as drawn, gives each entry its method's colour and marker.
    by_label = {s["label"]: s for s in series}
    assert {e["label"] for e in described.legend} == set(by_label)
    for entry in described.legend:
        spec = registry.get(by_label[entry["label"]]["method"])
        assert entry["color"] == spec.color
        assert entry["marker"] in (spec.marker, "None")
    _assert_readable(described.layout)
    assert random_note([_result("dtd", "zero-shot", 1.0, random=False)]) is None


def test_bars_legend_and_tick_labels_take_the_spec_colours(tmp_path):
    pytest.importorskip("matplotlib")
    from susx_cli.method import registry
    from susx_cli.plots import results_bars

    long_title = "top-1 accuracy (%) per dataset, " + "with a title long enough to run off the page " * 3
    described = results_bars(
        ["EuroSAT", "DTD", "Oxford Pets"],
        [
            ("Zero-shot CLIP", "zero-shot", [40.0, 41.0, 80.0]),
            ("TIP-X loo (SuS-SD, 16 images per class)", "tip-x", [50.0, None, 82.0]),
            ("Tip-Adapter loo (SuS-SD)", "tip-adapter", [48.0, 44.0, 81.0]),
        ],
        tmp_path / "b.png",
        title=long_title,
        note="RANDOM weights (every result): the numbers say nothing about the method",
    )
    assert [(e["label"], e["color"]) for e in described.legend] == [
        (registry.get(m).label, registry.get(m).color) for m in ("zero-shot", "tip-x", "tip-adapter")
    ]
    _assert_readable(described.layout)  # the long title is wrapped, not clipped
    (title,) = [t for t in described.layout["texts"] if t["role"] == "title" and t["axes"] == -1]
    assert "\n" in title["text"]


def test_report_draws_curves_and_keeps_bars_for_name_only_support_sets(tmp_path):
    pytest.importorskip("matplotlib")
    from susx_cli.artifacts.results import write_result

    results = _few_shot_results(random=False) + [
        _result(ds, "tip-x", 45.0, mode="loo", source="sd", random=False) for ds in ("eurosat", "dtd")
    ]
    for i, r in enumerate(results):
        write_result(tmp_path / "results" / f"{i:03d}.json", r)
    out = json.loads(invoke("report", tmp_path / "results", "--chart", tmp_path / "c.png", "--json").stdout)
    charts = out["summary"]["charts"]
    assert [(Path(c["path"]).name, c["kind"], c["note"]) for c in charts] == [
        ("c-shots.png", "shot-curves", None),
        ("c-name-only.png", "bars", None),
    ]
    for c in charts:
        _png_size(Path(c["path"]))
    assert not (tmp_path / "c.png").exists()
    # Name-only results alone: the bar chart, at the given path.
    only = [r for r in results if (r["support"] or {}).get("kind") != "folder-shots"]
    for i, r in enumerate(only):
        write_result(tmp_path / "named" / f"{i:03d}.json", r)
    out = json.loads(invoke("report", tmp_path / "named", "--chart", tmp_path / "b.png", "--json").stdout)
    assert [(Path(c["path"]).name, c["kind"]) for c in out["summary"]["charts"]] == [("b.png", "bars")]


# ------------------------------------------------------------------ calibration heat map


def test_heatmap_marks_and_annotates_the_chosen_point(tmp_path):
    pytest.importorskip("matplotlib")
    from susx_cli.plots import accuracy_heatmap

    acc = np.linspace(0.1, 0.9, 12).reshape(4, 3)  # best cell: the last
    alphas, gammas = [0.1, 1.0, 10.0, 50.0], [0.1, 1.0, 5.0]
    d = accuracy_heatmap(
        acc, alphas, gammas, 2.0, tmp_path / "h.png", chosen=(1.0, 5.0), objective_on="validation split"
    )
    assert d.chosen_cell == (1, 2)
    assert d.chosen == {"alpha": 1.0, "gamma": 5.0, "beta": 2.0, "accuracy": pytest.approx(100 * acc[1, 2])}
    assert (
        "alpha = 1" in d.annotation
        and "gamma = 5" in d.annotation
        and f"{100 * acc[1, 2]:.2f} %" in d.annotation
    )
    assert "(unitless)" in d.xlabel and "(unitless)" in d.ylabel and d.colorbar == "top-1 accuracy (%)"
    assert "validation split" in d.title and "beta = 2" in d.title
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG
    best = accuracy_heatmap(acc, alphas, gammas, 2.0, tmp_path / "b.png")  # no choice given: the best cell
    assert best.chosen_cell == (3, 2) and best.chosen["accuracy"] == pytest.approx(90.0)


def test_calibrate_heatmap_marks_the_calibrated_point(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import susx_cli.plots as plots
    from tests.helpers import build_method_workspace

    build_method_workspace(tmp_path, CLASSES[:3])
    monkeypatch.chdir(tmp_path)
    drawn = []
    original = plots.accuracy_heatmap
    monkeypatch.setattr(plots, "accuracy_heatmap", lambda *a, **k: drawn.append(original(*a, **k)))
    invoke(
        "calibrate",
        "text.h5",
        "sup.h5",
        "--val",
        "val.h5",
        "-o",
        "cal.json",
        "--alpha-grid",
        "0.5,1,2",
        "--beta-grid",
        "1,5",
        "--gamma-grid",
        "0,0.5,1",
        "--heatmap",
        "heat.png",
    )
    cal = json.loads((tmp_path / "cal.json").read_text())["hyperparameters"]
    (d,) = drawn
    assert (d.chosen["alpha"], d.chosen["gamma"], d.chosen["beta"]) == (
        cal["alpha"],
        cal["gamma"],
        cal["beta"],
    )
    assert "validation split" in d.title
    assert (tmp_path / "heat.png").read_bytes()[:8] == PNG


def test_heatmap_ticks_share_one_precision_and_fit(tmp_path):
    pytest.importorskip("matplotlib")
    from susx_cli.method.spec import reference_grid
    from susx_cli.plots import accuracy_heatmap, tick_decimals

    alphas, gammas = reference_grid(0.1, 50.0, 20), reference_grid(0.1, 30.0, 50)
    acc = np.random.default_rng(0).random((len(alphas), len(gammas)))
    d = accuracy_heatmap(
        acc, alphas, gammas, 3.0, tmp_path / "h.png", objective_on="support set (leave-one-out)"
    )
    for ticks in (d.xticks, d.yticks):
        decimals = {len(t.partition(".")[2]) for t in ticks}
        assert len(decimals) == 1 and len(set(ticks)) == len(ticks)  # one precision, distinct labels
    _assert_readable(d.layout)
    assert tick_decimals([0.1, 1.0, 5.0]) == 1 and tick_decimals([1, 2, 50]) == 0


@pytest.mark.parametrize("classes", [5, 60])
def test_confusion_matrix_labels_are_readable(tmp_path, classes):
    pytest.importorskip("matplotlib")
    from susx_cli.plots import confusion_figure

    rng = np.random.default_rng(classes)
    names = [f"class {i} " + "with a very long descriptive name" * (i % 2) for i in range(classes)]
    confusion = rng.integers(0, 5, (classes, classes)) + 20 * np.eye(classes, dtype=int)
    d = confusion_figure(names, tmp_path / "m.png", confusion=confusion, title="TIP-X: confusion")
    assert d.view == "matrix" and len(d.labels) == classes
    assert all(len(label) <= 24 for label in d.labels) and any(label.endswith("…") for label in d.labels)
    assert d.rotation == 90.0 and 6 <= d.fontsize <= 10
    _assert_readable(d.layout)


def test_confusion_of_many_classes_shows_the_top_confusions(tmp_path):
    pytest.importorskip("matplotlib")
    from susx_cli.plots import MATRIX_MAX_CLASSES, confusion_figure

    c = MATRIX_MAX_CLASSES + 1
    confusion = 10 * np.eye(c, dtype=int)
    confusion[3, 7] = 9  # the most frequent confusion
    confusion[5, 2] = 4
    d = confusion_figure([f"c{i}" for i in range(c)], tmp_path / "t.png", confusion=confusion)
    assert d.view == "top-confusions" and d.labels == ["c3 → c7", "c5 → c2"]
    _assert_readable(d.layout)
    # Long names push the axes right; the title still fits above them.
    names = [f"class number {i} with a rather long name" for i in range(c)]
    d = confusion_figure(
        names, tmp_path / "l.png", confusion=confusion, title=f"TIP-X: confusion over {c} classes"
    )
    assert d.labels[0] == "class number 3 with a r… → class number 7 with a r…"
    _assert_readable(d.layout)
