"""Sweeps: run identity in work-dir names (seeds and prompt variants reuse what they share), --seeds,
--dry-run's plan check, sweep files, dataset groups, and report's mean ± std over seeds with failed cells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from susx_cli.datasets import registry
from tests.helpers import TINY, invoke, read_susx_csv
from tests.stages.test_eval import SMALL_GRID, make_cars_root, make_eurosat_root
from tests.stages.test_ray_executor import ray_address  # noqa: F401 - the fixture of a local Ray instance

MODEL = f"{TINY[1]}:{TINY[3]}"


def cars_args(base: Path, *more) -> list:
    return [
        "eval",
        "-d",
        "stanford_cars",
        "--data-root",
        base / "data",
        "-m",
        MODEL,
        "--work-dir",
        base / "work",
        "--results-dir",
        base / "results",
        "--workers",
        "0",
        *more,
    ]


def feature_files(base: Path, split: str) -> list[Path]:
    return sorted((base / "work").rglob(f"{split}-*.h5"))


def test_seeds_and_templates_share_the_work_dir_and_embed_the_test_set_once(tmp_path):
    make_cars_root(tmp_path / "data")
    tipx = ["--method", "tip-x", "-s", "folder-shots:2", "--augment-passes", "2", *SMALL_GRID[:4]]
    first = json.loads(invoke(*cars_args(tmp_path, *tipx, "--seeds", "0", "--json")).stdout)
    assert first["summary"]["failed"] == 0
    (test_h5,) = feature_files(tmp_path, "test")
    made = test_h5.stat().st_mtime_ns
    # another seed in the same work dir: a new support sample, the same test features
    second = json.loads(invoke(*cars_args(tmp_path, *tipx, "--seeds", "1", "--json")).stdout)
    assert second["summary"] == {"runs": 1, "skipped": 0, "failed": 0}
    assert feature_files(tmp_path, "test") == [test_h5] and test_h5.stat().st_mtime_ns == made
    assert len(list((tmp_path / "work" / "stanford_cars" / "support").iterdir())) == 2
    assert len(feature_files(tmp_path, "support-2shot")) == 2
    seeds = sorted(json.loads(p.read_text())["seed"] for p in (tmp_path / "results").glob("*.json"))
    assert seeds == [0, 1]
    # both seeds again: both skipped; another template set: new prompts and text, the same test features
    again = json.loads(invoke(*cars_args(tmp_path, *tipx, "--seeds", "0,1", "--json")).stdout)
    assert again["summary"] == {"runs": 2, "skipped": 2, "failed": 0}
    invoke(*cars_args(tmp_path, *tipx, "--seeds", "0", "--templates", "photo"))
    assert len(list((tmp_path / "work" / "stanford_cars").glob("prompts-*.json"))) == 2
    assert len(feature_files(tmp_path, "text")) == 2
    assert feature_files(tmp_path, "test") == [test_h5] and test_h5.stat().st_mtime_ns == made
    assert len(list((tmp_path / "results").glob("*.json"))) == 3


def test_dry_run_lists_the_plan_and_refuses_an_impossible_one(tmp_path):
    make_cars_root(tmp_path / "data")  # 3 train images per class
    plan = cars_args(tmp_path, "--method", "tip-x", "--method", "gda", "-s", "folder-shots:2")
    plan += ["--calibration", "val", "--seeds", "0,1", "--dry-run"]
    out = json.loads(invoke(*plan, "--json").stdout)
    assert [(r["method"], r["seed"], r["status"]) for r in out["results"]] == [
        ("tip-x", 0, "planned"),
        ("gda", 0, "planned"),
        ("tip-x", 1, "planned"),
        ("gda", 1, "planned"),
    ]
    assert out["summary"]["planned"] == 4 and not (tmp_path / "work").exists()
    # 9 test + 6 val images (make_cars_root) and 2 seeds x 3 classes x 2 shots, 32 float32 each (susx-tiny-vit)
    assert out["summary"]["feature_bytes"] == (9 + 6 + 2 * 3 * 2) * 32 * 4
    assert not (tmp_path / "results").exists()
    # more shots than the train split has per class: refused before any work, naming the run
    bad = invoke(*cars_args(tmp_path, "--method", "tip-x", "-s", "folder-shots:4", "--dry-run"), expect=2)
    assert "stanford_cars__susx_tiny_vit-none__tip-x__4shot-seed0__loo" in bad.stderr
    assert "needs 4 train images per class" in bad.stderr
    # a method's and a mode's shot minimum: GDA needs 2 feature rows per class (one image without kept
    # views is too few; with 10 augmented views it is enough), k-fold 2 images per class
    one_shot = ["--method", "gda", "-s", "folder-shots:1", "--calibration", "val"]
    bad = invoke(*cars_args(tmp_path, *one_shot, "--augment-passes", "1"), expect=2)
    assert "gda with val calibration needs at least 2 support images per class" in bad.stderr
    bad = invoke(
        *cars_args(tmp_path, "--method", "tip-x", "-s", "folder-shots:1", "--calibration", "kfold"), expect=2
    )
    assert "kfold calibration needs at least 2" in bad.stderr
    assert not (tmp_path / "work").exists()  # a real run refuses the same plan before any work


SWEEP = """
datasets = ["stanford_cars", "eurosat"]
models = ["{model}"]
methods = ["tip-x", "gda"]
modes = ["val"]
shots = [1]
seeds = [0, 1]
augment_passes = 1
workers = 0
keep_going = true
data_root = "data"
work_dir = "work"
results_dir = "results"

[hyperparameters]
alpha_grid = "0.5,2"
beta_grid = "1,5"
gamma_grid = "0.1,1"
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """2 datasets x 2 methods x 2 seeds from a sweep file; GDA's 1-shot runs fail (it needs 2 per class)."""
    base = tmp_path_factory.mktemp("sweep")
    make_eurosat_root(make_cars_root(base / "data"))
    (base / "sweep.toml").write_text(SWEEP.format(model=MODEL))
    out = invoke("eval", "--config", base / "sweep.toml", "--json", expect=1)  # --keep-going: failures exit 1
    return base, json.loads(out.stdout)


def test_sweep_file_runs_every_cell_and_records_the_failed_ones(swept):
    base, out = swept
    assert out["summary"] == {"runs": 8, "skipped": 0, "failed": 4}
    records = [json.loads(p.read_text()) for p in sorted((base / "results").glob("*.json"))]
    assert len(records) == 8
    done = sorted((r["dataset"]["id"], r["seed"]) for r in records if r.get("status") != "failed")
    assert done == [("eurosat", 0), ("eurosat", 1), ("stanford_cars", 0), ("stanford_cars", 1)]
    failed = [r for r in records if r.get("status") == "failed"]
    assert {r["method"] for r in failed} == {"gda"} and all(
        "at least 2 support" in r["error"] for r in failed
    )


def test_report_shows_mean_std_and_n_over_seeds_and_marks_failed_cells(swept, tmp_path):
    base, _ = swept
    md = invoke("report", base / "results").stdout
    tipx = next(line for line in md.splitlines() if line.startswith("| TIP-X"))
    gda = next(line for line in md.splitlines() if line.startswith("| GDA"))
    assert tipx.count(" ± ") == 2 and tipx.count("(n=2)") == 2
    assert gda.count("| failed") == 2 and "duplicate" not in md and "4 failed run(s)" in md
    invoke("report", base / "results", "-f", "csv", "-o", tmp_path / "t.csv")
    header, *body = read_susx_csv(tmp_path / "t.csv", "susx.report_csv")
    rows = {r["method"]: r for r in (dict(zip(header, row, strict=True)) for row in body)}
    cars = [json.loads(p.read_text()) for p in (base / "results").glob("stanford_cars__*tip-x*.json")]
    figures = [r["metrics"]["top1"] for r in cars]
    mean = sum(figures) / 2
    std = (sum((v - mean) ** 2 for v in figures)) ** 0.5  # sample std of two values: |a - b| / sqrt(2)
    assert float(rows["TIP-X (1-shot)"]["stanford_cars"]) == pytest.approx(mean, abs=1e-4)
    assert float(rows["TIP-X (1-shot)"]["stanford_cars_std"]) == pytest.approx(std, abs=1e-4)
    assert rows["TIP-X (1-shot)"]["stanford_cars_n"] == "2" and rows["GDA (1-shot)"]["eurosat_failed"] == "2"
    assert rows["GDA (1-shot)"]["eurosat"] == "" and rows["GDA (1-shot)"]["mean"] == ""
    tex = invoke("report", base / "results", "--format", "latex").stdout
    assert "\\begin{tabular}" in tex and "$\\pm$" in tex and "(n=2)" in tex and "\\end{tabular}" in tex
    assert "html" in invoke("report", base / "results", "--format", "html", expect=2).stderr


def test_sweep_file_and_command_line_conflict(swept):
    base, _ = swept
    bad = invoke("eval", "--config", base / "sweep.toml", "--seeds", "3", expect=2)
    assert "seeds is set both in" in bad.stderr
    (base / "typo.toml").write_text('datasets = ["eurosat"]\nshot = [1]\n')
    assert "unknown key(s) shot" in invoke("eval", "--config", base / "typo.toml", expect=2).stderr
    (base / "broken.toml").write_text("datasets = [\n")
    assert "not a valid TOML file" in invoke("eval", "--config", base / "broken.toml", expect=2).stderr


def test_dataset_groups():
    assert registry.expand_groups(["coop11"]) == [d for d, s in registry.DATASETS.items() if s.coop]
    assert len(registry.expand_groups(["paper19", "mine.json"])) == 20


@pytest.mark.slow
def test_eval_on_ray_equals_a_local_run(ray_address, tmp_path):  # noqa: F811 - the imported fixture
    """One Ray task per run, the driver writing the records: the same results as a local run."""
    make_cars_root(tmp_path / "data")
    plan = [
        "--method",
        "tip-x",
        "-s",
        "folder-shots:2",
        "--augment-passes",
        "2",
        "--seeds",
        "0,1",
        *SMALL_GRID[:4],
    ]
    local = json.loads(invoke(*cars_args(tmp_path, *plan, "--json")).stdout)
    ray_run = [*plan, "--results-dir", tmp_path / "ray-results", "--executor", "ray", "--json"]
    remote = json.loads(invoke(*cars_args(tmp_path, *ray_run)).stdout)
    assert [r["status"] for r in remote["results"]] == ["done", "done"]
    for a, b in zip(local["results"], remote["results"], strict=True):
        assert (a["seed"], a["top1"], a["mean_per_class_recall"]) == (
            b["seed"],
            b["top1"],
            b["mean_per_class_recall"],
        )
    for path in (tmp_path / "ray-results").glob("*.json"):
        ours, theirs = (
            json.loads(path.read_text()),
            json.loads((tmp_path / "results" / path.name).read_text()),
        )
        assert ours["metrics"] == theirs["metrics"] and ours["config_key"] == theirs["config_key"]
