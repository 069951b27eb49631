"""The 19-dataset registry, `susx datasets`, `susx eval`, `susx report`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from susx_cli.datasets import registry
from tests.helpers import invoke, make_class_folders, make_split, read_susx_csv, result_file

# Alphabetical order differs from index order on purpose.
CLASSES = ["zebra", "apple", "mango"]
SMALL_GRID = ["--alpha-grid", "0.5,2", "--beta-grid", "1,5", "--gamma-grid", "0.1,1"]


def make_cars_root(data_root: Path) -> Path:
    """A miniature Stanford Cars in the CoOp layout (split file at the folder, paths relative to it)."""
    folder = data_root / "stanford_cars"
    split = make_split(folder, CLASSES, {"train": 3, "val": 2, "test": 3})
    split.rename(folder / "split_zhou_StanfordCars.json")
    return data_root


def make_eurosat_root(data_root: Path) -> Path:
    """A miniature EuroSAT: CoOp rows are relative to eurosat/2750/."""
    folder = data_root / "eurosat"
    make_class_folders(folder / "2750", CLASSES, 9)
    rows = {s: [] for s in ("train", "val", "test")}
    for ci, name in enumerate(CLASSES):
        for j in range(9):
            rows[("train", "val", "test")[j % 3]].append([f"{name}/img_{j:03d}.png", ci, name])
    (folder / "split_zhou_EuroSAT.json").write_text(json.dumps(rows))
    return data_root


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from tests.helpers import TINY

    base = tmp_path_factory.mktemp("eval")
    data = make_eurosat_root(make_cars_root(base / "data"))
    args = [
        "eval",
        "--dataset",
        "stanford_cars",
        "--dataset",
        "eurosat",
        "--data-root",
        data,
        "--model",
        f"{TINY[1]}:{TINY[3]}",
        "--support",
        "folder-shots:2",
        "--calibration",
        "loo",
        "--calibration",
        "val",
        "--work-dir",
        base / "work",
        "--results-dir",
        base / "results",
        "--workers",
        "0",
        *SMALL_GRID,
    ]
    first = invoke(*args, "--json")
    return base, data, args, json.loads(first.stdout)


def test_registry_has_19_datasets_with_templates_and_questions():
    from susx_cli.cupl.questions import dataset_questions
    from susx_cli.templates import photo_template

    assert len(registry.DATASETS) == 19
    for spec in registry.DATASETS.values():
        assert photo_template(spec.id) == spec.photo_template and dataset_questions(spec.id) == list(
            spec.cupl_questions
        )
        assert spec.layout in registry.LAYOUTS and spec.calibration_split in ("val", "test")
    for name in ("imagenet", "imagenet-sketch", "imagenet-r", "cifar10", "cifar100"):
        assert registry.get(name).calibration_split == "test"
    assert registry.get("dtd").split_file == "split_zhou_DescribableTextures.json"
    assert sum(s.coop for s in registry.DATASETS.values()) == 11
    assert registry.get("imagenet").paper["zero-shot"] == 60.32 and registry.get("cub").paper == {}
    # DTD has TDA's published figures too (TDA README for RN50, DPE Tables 1-2 for ViT-B/16)
    dtd = registry.get("dtd").paper
    assert dtd["tda@RN50/openai"] == 43.74 and dtd["tda@ViT-B-16/openai"] == 47.40
    assert registry.class_names("cifar10")[0] == "airplane"


def test_datasets_list_and_check(tmp_path):
    out = json.loads(invoke("datasets", "list", "--json").stdout)
    assert [d["id"] for d in out["datasets"]] == list(registry.DATASETS)
    data = make_cars_root(tmp_path)
    res = invoke("datasets", "check", data, "stanford_cars", "--json")
    assert json.loads(res.stdout)["complete"] is True
    # a missing image is named; exit 1
    (data / "stanford_cars" / "images" / "apple" / "test_001.png").unlink()
    bad = invoke("datasets", "check", data, "stanford_cars", expect=1)
    assert "1 of" in bad.stderr and "test_001.png" in bad.stderr
    # wrong layout: no split file
    (data / "stanford_cars" / "split_zhou_StanfordCars.json").rename(data / "stanford_cars" / "split.json")
    bad = invoke("datasets", "check", data, "stanford_cars", expect=2)
    assert "split_zhou_StanfordCars.json is missing" in bad.stderr
    bad = invoke("datasets", "check", data, "dtd", expect=2)
    assert "folder dtd/ is missing" in bad.stderr
    # class folders (ImageNet layout): too few WordNet-id folders is incomplete
    make_class_folders(tmp_path / "imagenet" / "val", ["n01440764", "n01443537"], 1)
    bad = invoke("datasets", "check", tmp_path, "imagenet", expect=1)
    assert "WordNet-id folders" in bad.stderr
    invoke("datasets", "check", tmp_path, "nosuch", expect=2)


def test_fgvc_variants_layout(tmp_path):
    folder = tmp_path / "fgvc_aircraft"
    make_class_folders(folder / "tmp", ["707-320", "A300B4"], 3)
    (folder / "images").mkdir()
    lines = {s: [] for s in ("train", "val", "test")}
    for ci, name in enumerate(["707-320", "A300B4"]):
        for j, s in enumerate(("train", "val", "test")):
            (folder / "tmp" / name / f"img_{j:03d}.png").rename(folder / "images" / f"{ci}{j}.jpg")
            lines[s].append(f"{ci}{j} {name}")
    (folder / "variants.txt").write_text("707-320\nA300B4\n")
    for s, ls in lines.items():
        (folder / f"images_variant_{s}.txt").write_text("\n".join(ls) + "\n")
    local = registry.check_local(registry.get("fgvc_aircraft"), tmp_path)
    assert not local.problems and local.classes == ["707-320", "A300B4"] and len(local.splits["test"]) == 2


def test_eval_writes_results_and_skips_on_rerun(evaluated):
    base, data, args, first = evaluated
    # per dataset: zero-shot + 2 methods x 2 calibrations = 5 runs
    assert first["summary"] == {"runs": 10, "skipped": 0, "failed": 0}
    files = sorted((base / "results").glob("*.json"))
    assert len(files) == 10
    tipx = json.loads(
        result_file(base / "results", "eurosat__susx_tiny_vit-none__tip-x__2shot-seed0__val").read_text()
    )
    assert tipx["kind"] == "susx.result" and tipx["schema_version"] == 1
    assert tipx["dataset"]["id"] == "eurosat" and tipx["dataset"]["n_queries"] == 9
    assert tipx["support"]["size"] == 6 and tipx["support"]["shots"] == 2
    assert tipx["calibration"]["mode"] == "val" and tipx["calibration"]["split"] == "val"
    assert set(tipx["metrics"]) >= {"top1", "mean_per_class_recall"}
    assert (
        tipx["zero_shot_protocol"]["logit_scale"] == 100.0
        and tipx["zero_shot_protocol"]["text_pool"] == "template"
    )
    assert tipx["model"]["random_weights"] is True
    again = invoke(*args, "--json")
    assert json.loads(again.stdout)["summary"] == {"runs": 10, "skipped": 10, "failed": 0}
    assert "skipped" in again.stderr
    # one line per run with its result, as it finishes
    finished = re.findall(r"skipped (\S+): top-1 \d+\.\d\d, mean recall \d+\.\d\d$", again.stderr, re.M)
    assert sorted(f"{name}.json" for name in finished) == [f.name for f in files]


def test_report_table_csv_chart(evaluated, tmp_path):
    base, *_ = evaluated
    res = invoke("report", base / "results", "-o", tmp_path / "r.md", "--chart", tmp_path / "c.png")
    md = (tmp_path / "r.md").read_text()
    assert "| method |" in md and "Stanford Cars" in md and "EuroSAT" in md and "mean" in md
    assert "TIP-X (2-shot)" in md and "Zero-shot CLIP" in md
    assert "paper: zero-shot CLIP, 7-template ensemble" in md and "58.53" in md
    assert "RANDOM" in md
    invoke("report", base / "results", "--format", "csv", "-o", tmp_path / "r.csv")
    rows = read_susx_csv(tmp_path / "r.csv", "susx.report_csv")
    assert rows[0][:5] == ["source", "method", "model", "support", "calibration"]
    # TIP-X 2-shot has quoted figures for both datasets (registry.PAPER_NUMBERS), so both get a paper column
    per_dataset = ["{}", "{}_std", "{}_n", "{}_failed", "{}_paper"]
    datasets = [c.format(d) for d in ("stanford_cars", "eurosat") for c in per_dataset]
    assert rows[0][5:] == [*datasets, "mean", "mean_paper", "group"]
    assert all(r[7] == "1" and r[6] == "" and r[8] == "0" for r in rows[1:])  # one seed: n = 1, no std
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert str(tmp_path / "r.md") in res.stdout


def test_report_notes_mixed_protocols_and_refuses_other_schema(evaluated, tmp_path):
    base, *_ = evaluated
    src = result_file(base / "results", "eurosat__susx_tiny_vit-none__zero-shot__none__none")
    data = json.loads(src.read_text())
    data["zero_shot_protocol"]["text_pool"] = "combined"
    data["dataset"]["id"] = "dtd"
    (tmp_path / "other.json").write_text(json.dumps(data))
    res = invoke("report", base / "results", tmp_path / "other.json")
    assert "mix 2 zero-shot protocols" in res.stdout
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "susx.calibration", "schema_version": 1}))
    bad = invoke("report", tmp_path / "bad.json", expect=2)
    assert "expected susx.result" in bad.stderr
    data["schema_version"] = 7
    (tmp_path / "v7.json").write_text(json.dumps(data))
    assert "schema version 7" in invoke("report", tmp_path / "v7.json", expect=2).stderr


def test_eval_bad_inputs(evaluated, tmp_path):
    base, data, *_ = evaluated
    common = ["--model", "susx-tiny-vit:none", "--work-dir", tmp_path / "w", "--results-dir", tmp_path / "r"]
    # wrong layout / missing split file
    bad = invoke("eval", "--dataset", "dtd", "--data-root", data, "--method", "zero-shot", *common, expect=2)
    assert "dtd" in bad.stderr and "missing" in bad.stderr
    # prompts whose classes differ from the split's
    (tmp_path / "classes.txt").write_text("zebra\napple\nkiwi\n")
    invoke("prompts", "--classes", tmp_path / "classes.txt", "-o", tmp_path / "p.json")
    bad = invoke(
        "eval",
        "--dataset",
        "eurosat",
        "--data-root",
        data,
        "--prompts",
        tmp_path / "p.json",
        "--method",
        "zero-shot",
        *common,
        expect=2,
    )
    assert "class lists" in bad.stderr and "differ" in bad.stderr
    # unknown support source, fixed without values, unknown dataset
    bad = invoke("eval", "--dataset", "eurosat", "--data-root", data, "--support", "sd:4", *common, expect=2)
    assert "susx curate" in bad.stderr
    bad = invoke(
        "eval",
        "--dataset",
        "eurosat",
        "--data-root",
        data,
        "--support",
        "folder-shots:1",
        "--calibration",
        "fixed",
        *common,
        expect=2,
    )
    assert "--alpha" in bad.stderr
    invoke("eval", "--dataset", "nosuch", "--data-root", data, *common, expect=2)
    # a zero-shot scale or a grid point that is not a positive finite number, refused before any work
    for bad_option in (["--logit-scale", "nan"], ["--logit-scale", "-1"], ["--alpha-grid", "0.1,nan"]):
        method = ["--method", "zero-shot"] if bad_option[0] == "--logit-scale" else ["-s", "folder-shots:2"]
        bad = invoke(
            "eval", "--dataset", "eurosat", "--data-root", data, *method, *bad_option, *common, expect=2
        )
        assert bad_option[0] in bad.stderr and not (tmp_path / "w").exists()
