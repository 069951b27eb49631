"""Own data everywhere (WordNet-id folders, path,label tables, dataset files in
eval, checks before any work, --keep-going) and the guard rails (val == test warning, no LAION default)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from susx_cli.artifacts import hdf5
from tests.helpers import TINY, invoke, make_class_folders, make_image, result_file

# Index order differs from alphabetical order: a sorted listing would permute the labels.
CLASSES = ["zebra", "apple", "mango"]
# Three ImageNet-1k WordNet ids, listed out of their sorted order; index = position among the sorted ids.
WNIDS = {"n15075141": 999, "n01440764": 0, "n01443537": 1}


@pytest.fixture()
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return tmp_path


def test_wordnet_id_folders_take_imagenet_labels(work):
    from susx_cli.classnames import imagenet_wnids

    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids == sorted(wnids) and wnids[0] == "n01440764"
    make_class_folders(work / "val", list(WNIDS), 2)
    invoke("prompts", "--dataset", "imagenet", "-o", "prompts.json")
    invoke("embed", "val", "-c", "prompts.json", "-o", "q.h5", "--workers", "0", *TINY)
    feats = hdf5.read_features(work / "q.h5")
    assert len(feats.classes) == 1000 and feats.classes[0] == "tench"
    assert [WNIDS[k.split("/")[0]] for k in feats.keys] == feats.labels.tolist()
    # Without a class list, WordNet-id folders are ImageNet's classes as open_clip names them.
    invoke("embed", "val", "-o", "q2.h5", "--workers", "0", *TINY)
    assert hdf5.read_features(work / "q2.h5").labels.tolist() == feats.labels.tolist()


def test_wordnet_id_folders_match_a_subset_class_list_by_name(work):
    from susx_cli.datasets.registry import class_names

    names = class_names("imagenet")
    subset = [names[999], names[1], names[0]]  # toilet paper, goldfish, tench
    (work / "subset.txt").write_text("\n".join(subset) + "\n")
    invoke("prompts", "-c", "subset.txt", "-o", "p.json")
    make_class_folders(work / "val", list(WNIDS), 1)
    invoke("embed", "val", "-c", "p.json", "-o", "q.h5", "--workers", "0", *TINY)
    feats = hdf5.read_features(work / "q.h5")
    expect = {"n15075141": 0, "n01443537": 1, "n01440764": 2}
    assert [expect[k.split("/")[0]] for k in feats.keys] == feats.labels.tolist()
    # A class missing from the list is named in one line.
    (work / "two.txt").write_text(f"{names[0]}\n{names[1]}\n")
    invoke("prompts", "-c", "two.txt", "-o", "two.json")
    bad = invoke("embed", "val", "-c", "two.json", "-o", "x.h5", *TINY, expect=2)
    assert "n15075141 (toilet paper)" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (work / "x.h5").exists()


def make_table(work: Path, sep: str = ",", header: bool = True) -> tuple[Path, list[int]]:
    """Images under work/data/pics/, a table in work/data/ with names and indices mixed; returns (table,
    expected labels)."""
    rows, labels = [], []
    work = work / "data"
    for ci, name in enumerate(CLASSES):
        for j in range(2):
            rel = f"pics/{ci}_{j}.png"
            make_image(work / rel, ci * 10 + j, (40 + 80 * ci, 200 - 60 * ci, 90))
            rows.append(f"{rel}{sep}{name if j == 0 else ci}")
            labels.append(ci)
    path = work / ("table.csv" if sep == "," else "table.tsv")
    path.write_text(("path" + sep + "label\n" if header else "") + "\n".join(rows) + "\n")
    return path, labels


@pytest.mark.parametrize(("sep", "header"), [(",", True), ("\t", False)])
def test_path_label_table_gives_labels_by_name_or_index(work, sep, header):
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    table, labels = make_table(work, sep, header)
    invoke("embed", table, "-c", "p.json", "-o", "t.h5", "--workers", "0", *TINY)
    feats = hdf5.read_features(work / "t.h5")
    by_key = dict(zip([f"pics/{c}_{j}.png" for c in range(3) for j in range(2)], labels, strict=True))
    assert [by_key[k] for k in feats.keys] == feats.labels.tolist() and feats.classes == CLASSES
    # curate --source folder reads the same table into a support set with the same labels
    invoke("curate", "p.json", "-o", "sup", "--images", table)
    rows = [json.loads(x) for x in (work / "sup" / "manifest.jsonl").read_text().splitlines()]
    assert sorted((r["origin"], r["class_index"]) for r in rows) == sorted(by_key.items())


def test_table_paths_relative_to_image_root(work):
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    make_table(work)
    (work / "lists").mkdir()
    (work / "lists" / "t.csv").write_text("pics/0_0.png,zebra\npics/1_0.png,apple\npics/2_0.png,mango\n")
    invoke("embed", "lists/t.csv", "-c", "p.json", "-o", "a.h5", *TINY, expect=2)  # relative to lists/
    invoke(
        "embed", "lists/t.csv", "-c", "p.json", "--image-root", "data", "-o", "a.h5", "--workers", "0", *TINY
    )
    assert hdf5.read_features(work / "a.h5").labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("pics/0_0.png,zebra\npics/1_0.png,banana\n", "row 2: label 'banana' is not a class name"),
        ("path,label\npics/0_0.png,3\n", "row 2: label index 3 is out of range for 3 classes"),
        ("pics/0_0.png,-1\n", "row 1: label index -1 is out of range"),
        ("pics/0_0.png,zebra\n\npics/none.png,apple\n", "row 3: image pics/none.png does not exist"),
        ("pics/0_0.png,zebra,extra\n", "row 1: 3 cell(s), expected 2"),
        ("pics/0_0.png,zebra\npics/0_0.png,zebra\n", "row 2: image pics/0_0.png is listed again"),
    ],
)
def test_table_errors_are_one_line_naming_the_row(work, rows, message):
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    make_table(work)
    (work / "data" / "bad.csv").write_text(rows)
    bad = invoke("embed", "data/bad.csv", "-c", "p.json", "-o", "b.h5", *TINY, expect=2)
    assert message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (work / "b.h5").exists()


def test_table_needs_a_class_list(work):
    table, _ = make_table(work)
    bad = invoke("embed", table, "-o", "b.h5", *TINY, expect=2)
    assert "needs the class list" in bad.stderr and "--classes" in bad.stderr


# ---------------------------------------------------------------------------------------------------
# Guard rails


def test_predict_warns_when_calibrated_on_its_own_queries(work):
    from tests.helpers import make_split

    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    split = make_split(work / "data", CLASSES, {"train": 2, "val": 2, "test": 2})
    invoke("curate", "p.json", "-o", "sup", "--images", split, "--split", "train")
    for args in (
        ("sup", "-o", "sup.h5"),
        ("p.json", "-o", "text.h5"),
        (split, "--split", "val", "-c", "p.json", "-o", "val.h5"),
        (split, "--split", "test", "-c", "p.json", "-o", "test.h5"),
    ):
        invoke("embed", *args, "--workers", "0", *TINY) if args[0] != "p.json" else invoke(
            "embed", *args, *TINY
        )
    grid = ["--alpha-grid", "1,2", "--beta-grid", "1,2", "--gamma-grid", "0,1"]
    invoke("calibrate", "text.h5", "sup.h5", "--val", "test.h5", "-o", "cal.json", *grid)
    tuned = invoke(
        "predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "p1.h5"
    )
    assert "tuned on its own test set" in tuned.stderr
    invoke("calibrate", "text.h5", "sup.h5", "--val", "val.h5", "-o", "cal2.json", *grid)
    held_out = invoke(
        "predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal2.json", "-o", "p2.h5"
    )
    assert "tuned on its own test set" not in held_out.stderr


def test_laion_without_knn_url_names_both_ways(work):
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    bad = invoke("curate", "p.json", "-o", "sup", "--source", "laion", "-k", "2", expect=2)
    assert "--knn-url" in bad.stderr and "--laion-mode captions" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (work / "sup").exists()


# ---------------------------------------------------------------------------------------------------
# eval on own datasets


def make_own_dataset(root: Path, broken: str | None = None) -> Path:
    """A dataset file: train as a path,label CSV (indices), val as a TSV (names), test as class folders.

    ``broken``: 'label' puts an unknown class name in the test table; 'file' names a missing image."""
    make_class_folders(root / "test", CLASSES, 3)
    make_class_folders(root / "pool", CLASSES, 4, seed=1)
    (root / "train.csv").write_text(
        "path,label\n"
        + "".join(f"pool/{name}/img_{j:03d}.png,{ci}\n" for ci, name in enumerate(CLASSES) for j in (0, 1))
    )
    (root / "val.tsv").write_text(
        "".join(f"pool/{name}/img_{j:03d}.png\t{name}\n" for name in CLASSES for j in (2, 3))
    )
    splits = {"train": "train.csv", "val": "val.tsv", "test": "test"}
    if broken:
        bad = "pool/zebra/img_000.png,banana\n" if broken == "label" else "pool/none.png,zebra\n"
        (root / "test.csv").write_text("pool/apple/img_000.png,apple\n" + bad)
        splits["test"] = "test.csv"
    spec = {
        "id": root.name,
        "classes": CLASSES,
        "splits": splits,
        "photo_template": "A photo of a {}, a fruit.",
    }
    (root / "dataset.json").write_text(json.dumps(spec))
    return root / "dataset.json"


EVAL = [
    "--model",
    "susx-tiny-vit:none",
    "--method",
    "zero-shot",
    "--method",
    "tip-x",
    "--support",
    "folder-shots:1",
    "--calibration",
    "val",
    "--alpha-grid",
    "1,2",
    "--beta-grid",
    "1,2",
    "--gamma-grid",
    "0,1",
    "--workers",
    "0",
]


def test_own_dataset_eval_end_to_end(work):
    good = make_own_dataset(work / "fruit")
    out = json.loads(invoke("eval", "--dataset", good, *EVAL, "--json").stdout)
    assert out["summary"] == {"runs": 2, "skipped": 0, "failed": 0}
    res = json.loads(
        result_file(work / "susx-results", "fruit__susx_tiny_vit-none__tip-x__1shot-seed0__val").read_text()
    )
    assert (
        res["dataset"]["id"] == "fruit"
        and res["dataset"]["n_queries"] == 9
        and res["dataset"]["num_classes"] == 3
    )
    assert res["zero_shot_protocol"]["photo_template"] == "A photo of a {}, a fruit."
    preds = hdf5.read_predictions(Path(res["artifacts"]["predictions"]))
    assert preds.classes == CLASSES
    assert [CLASSES.index(k.split("/")[1]) for k in preds.keys] == preds.labels.tolist()  # test/<class>/img
    rerun = json.loads(invoke("eval", "--dataset", good, *EVAL, "--json").stdout)
    assert rerun["summary"] == {"runs": 2, "skipped": 2, "failed": 0}
    report = invoke("report", work / "susx-results")
    assert "fruit" in report.stdout


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("label", "test.csv row 2: label 'banana' is not a class name"),
        ("file", "test.csv row 2: image pool/none.png does not exist"),
    ],
)
def test_eval_checks_every_dataset_before_computing_any(work, broken, message):
    good, bad = make_own_dataset(work / "fruit"), make_own_dataset(work / "broken", broken)
    r = invoke("eval", "--dataset", good, "--dataset", bad, *EVAL, expect=2)
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (work / "susx-work").exists() and not (work / "susx-results").exists()


def test_eval_keep_going_records_the_failed_runs(work):
    good, bad = make_own_dataset(work / "fruit"), make_own_dataset(work / "broken", "label")
    r = invoke("eval", "--dataset", bad, "--dataset", good, *EVAL, "--keep-going", "--json", expect=1)
    out = json.loads(r.stdout)
    assert out["summary"] == {"runs": 4, "skipped": 0, "failed": 2}
    failed = [row for row in out["results"] if row["status"] == "failed"]
    assert {row["dataset"] for row in failed} == {"broken"} and "label 'banana'" in failed[0]["error"]
    record = json.loads(
        result_file(work / "susx-results", "broken__susx_tiny_vit-none__zero-shot__none__none").read_text()
    )
    assert record["status"] == "failed" and "label 'banana'" in record["error"] and record["metrics"] == {}
    done = [row for row in out["results"] if row["status"] == "done"]
    assert {row["dataset"] for row in done} == {"fruit"} and len(done) == 2
    # the report marks the failed cells (no mean over fewer datasets); once the data is fixed, they are retried
    md = invoke("report", work / "susx-results").stdout
    tipx = next(line for line in md.splitlines() if line.startswith("| TIP-X"))
    cells = [c.strip() for c in tipx.strip("|").split("|")]
    assert "| broken | fruit | mean |" in md and cells[4] == "failed" and cells[5] != "—" and cells[6] == "—"
    assert "2 failed run(s)" in md and "label 'banana'" in md
    make_own_dataset(work / "broken")
    (work / "broken" / "test.csv").unlink()
    again = json.loads(
        invoke("eval", "--dataset", bad, "--dataset", good, *EVAL, "--keep-going", "--json").stdout
    )
    assert again["summary"] == {"runs": 4, "skipped": 2, "failed": 0}


def test_dataset_file_errors(work):
    (work / "d.json").write_text(json.dumps({"classes": CLASSES}))
    r = invoke(
        "eval",
        "--dataset",
        work / "d.json",
        "--model",
        "susx-tiny-vit:none",
        "--method",
        "zero-shot",
        expect=2,
    )
    assert "give either split_file or splits" in r.stderr
    invoke("eval", "--dataset", "dtd", "--model", "susx-tiny-vit:none", "--method", "zero-shot", expect=2)
