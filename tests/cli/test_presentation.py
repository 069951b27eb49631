"""Stages print nothing unless a reporter is installed; tables live in commands; one cache folder."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from susx_cli import progress
from susx_cli.stages.results import StageResult
from tests.helpers import TINY, invoke, make_class_folders, make_image

CLASSES = ["zebra", "apple", "mango"]
MODEL = {"model": "susx-tiny-vit", "pretrained": "none"}


def test_stage_functions_called_from_python_print_nothing(tmp_path: Path, capsys):
    from susx_cli.sources.folder import FolderSource
    from susx_cli.stages.calibrate import calibrate_files as calibrate
    from susx_cli.stages.curate import curate_source as curate
    from susx_cli.stages.embed import embed_images, embed_texts
    from susx_cli.stages.prompts import build_prompts

    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    make_class_folders(tmp_path / "shots", CLASSES, 3)
    build_prompts(tmp_path / "p.json", classes_path=tmp_path / "classes.txt")
    for _ in range(2):  # the second run is "up to date": an info line with a reporter
        curate(tmp_path / "p.json", tmp_path / "sup", FolderSource(tmp_path / "shots"))
    embed_texts(tmp_path / "p.json", tmp_path / "text.h5", **MODEL)
    embed_images(tmp_path / "sup", tmp_path / "sup.h5", workers=0, **MODEL)
    calibrate(tmp_path / "text.h5", tmp_path / "sup.h5", tmp_path / "cal.json")
    out, err = capsys.readouterr()
    assert (out, err) == ("", "")
    # ... and under a reporter the same calls do report
    with progress.reporting(progress.RichReporter()):
        curate(tmp_path / "p.json", tmp_path / "sup", FolderSource(tmp_path / "shots"))
    assert "up to date" in capsys.readouterr().err


def test_null_reporter_sends_info_and_warnings_to_logging(tmp_path: Path, capsys, caplog):
    from susx_cli.sources.folder import FolderSource
    from susx_cli.stages.curate import curate_source as curate
    from susx_cli.stages.prompts import build_prompts

    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    make_class_folders(tmp_path / "imgs", CLASSES, 2)
    (tmp_path / "imgs" / "zebra" / "broken.png").write_bytes(b"not an image")
    build_prompts(tmp_path / "p.json", classes_path=tmp_path / "classes.txt")
    with caplog.at_level(logging.INFO, logger="susx"):
        curate(tmp_path / "p.json", tmp_path / "sup", FolderSource(tmp_path / "imgs"))
        curate(tmp_path / "p.json", tmp_path / "sup", FolderSource(tmp_path / "imgs"))
    assert capsys.readouterr() == ("", "")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("skipped unreadable image" in w and "broken.png" in w for w in warnings)
    assert any("up to date" in i for i in infos)


def test_reporting_restores_the_previous_reporter():
    rich = progress.RichReporter(quiet=True)
    assert isinstance(progress.current(), progress.NullReporter)
    with progress.reporting(rich):
        assert progress.current() is rich
        with progress.reporting(progress.NULL):
            assert progress.current() is progress.NULL
        assert progress.current() is rich
    assert isinstance(progress.current(), progress.NullReporter)


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    make_class_folders(tmp_path / "shots", CLASSES, 3)
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    return tmp_path


def test_cli_reports_on_stderr_unless_quiet(work):
    r = invoke("curate", "p.json", "-o", "sup", "--images", "shots")
    assert "import images" in r.stderr and r.stdout.strip() == "sup"
    r = invoke("curate", "p.json", "-o", "sup", "--images", "shots")
    assert "up to date" in r.stderr
    r = invoke("embed", "sup", "-o", "sup.h5", *TINY, "-q")  # warns that the weights are random: nothing else
    assert all(line.startswith("warning:") for line in r.stderr.splitlines()) and r.stdout.strip() == "sup.h5"
    r = invoke("curate", "p.json", "-o", "sup", "--images", "shots", "-q")
    assert r.stderr == ""
    # a warning still shows with --quiet: it means something was left out
    make_image(work / "more" / "zebra" / "a.png", 1, (200, 10, 10))
    (work / "more" / "zebra" / "bad.png").write_bytes(b"junk")
    for name in CLASSES[1:]:
        make_image(work / "more" / name / "a.png", 2, (10, 200, 10))
    r = invoke("curate", "p.json", "-o", "sup2", "--images", "more", "-q")
    assert "warning:" in r.stderr and "bad.png" in r.stderr and "import images" not in r.stderr


def _class_stats_result(**extra) -> StageResult:
    from susx_cli.sources import ranked

    stats = {0: {"candidates": 9, "tried": 4, "valid": 3, "kept": 2, "failed": 1}, 1: {"candidates": 0}}
    summary = {"class_stats": ranked.class_stats(["zebra", "apple"], stats, wanted=2), **extra}
    return StageResult("curate", [Path("sup")], summary=summary)


def test_retrieval_stats_are_data_and_the_command_draws_the_table():
    from rich.console import Console

    from susx_cli.commands.curate import class_stats_table

    result = _class_stats_result(mode="knn")
    rows = result.summary["class_stats"]["classes"]
    assert rows[0] == {
        "class": "zebra",
        "candidates": 9,
        "tried": 4,
        "valid": 3,
        "kept": 2,
        "failed": 1,
        "invalid": 0,
        "duplicate": 0,
    }
    assert rows[1]["class"] == "apple" and rows[1]["kept"] == 0
    console = Console(record=True, width=120)
    console.print(class_stats_table("laion", result))
    text = console.export_text()
    assert "laion (knn): downloads per class" in text and "75%" in text and "0/2" in text
    assert class_stats_table("pool", StageResult("curate", [])) is None


def test_no_source_or_moved_stage_builds_a_rich_table():
    """Rendering lives in commands/ (stages/predict.py and stages/eval.py move theirs in their own change)."""
    import susx_cli

    root = Path(susx_cli.__file__).parent
    files = [
        *sorted((root / "sources").glob("*.py")),
        root / "stages" / "demo.py",
        root / "stages" / "curate.py",
    ]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "rich.table" not in text and "rich.console" not in text, path.name
    from susx_cli.stages.results import DemoResult

    assert not hasattr(DemoResult, "table")


def test_demo_table_is_drawn_by_the_command():
    from rich.console import Console

    from susx_cli.commands.demo import demo_table
    from susx_cli.stages.results import DemoResult

    rows = [
        {
            "support": "-",
            "method": "zero-shot",
            "calibration": "-",
            "top1": 41.25,
            "mean_per_class_recall": 40.0,
        }
    ]
    console = Console(record=True, width=160)
    console.print(demo_table(DemoResult([Path("d")], rows=rows, random_weights=True)))
    text = console.export_text()
    assert "RANDOM WEIGHTS" in text and "zero-shot" in text and "41.2" in text


# ------------------------------------------------------------------ the cache folder


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SUSX_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path


def test_cache_dir_expands_home_and_env_vars_win_in_order(home, monkeypatch):
    from susx_cli.paths import cache_dir

    assert cache_dir() == home / ".cache" / "susx"
    monkeypatch.setenv("XDG_CACHE_HOME", "~/xdg")
    assert cache_dir() == home / "xdg" / "susx"
    monkeypatch.setenv("SUSX_CACHE_DIR", "~/mine")
    assert cache_dir() == home / "mine"  # SUSX_CACHE_DIR wins over XDG_CACHE_HOME
    monkeypatch.setenv("SUSX_CACHE_DIR", "")
    assert cache_dir() == home / "xdg" / "susx"  # empty means unset


def test_fetch_and_the_pool_cache_use_the_one_cache_dir(home, monkeypatch):
    from susx_cli.net import fetch
    from susx_cli.sources.pool import PoolSource

    (home / "images").mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", "~/xdg")
    assert fetch.cache_dir() == home / "xdg" / "susx"
    features = PoolSource(str(home / "images"), 2).features_path()
    assert features.parent == home / "xdg" / "susx" / "pool-features"  # `~` expanded (it was not before)


def test_each_test_gets_its_own_empty_caches(tmp_path_factory):
    """tests/conftest.py points every cache variable at a fresh folder under pytest's temporary root."""
    import os

    from susx_cli.paths import cache_dir
    from tests.conftest import CACHE_VARIABLES

    base = tmp_path_factory.getbasetemp().resolve()
    folders = [Path(os.environ[name]).resolve() for name in CACHE_VARIABLES]
    assert all(base in folder.parents for folder in folders), folders
    assert len({folder.parent for folder in folders}) == 1  # one test's set
    assert cache_dir() == folders[0] and not cache_dir().exists()


def test_tables_off_a_terminal_keep_every_name_whole():
    """A log (or a pipe) gets a table at the width of its content: no column squeezed, no '…'."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from susx_cli.commands.eval import results_table

    model = "my-birds-finetuned-ViT-B-32-laion2b_s34b_b79k-epoch32:/checkpoints/run-2026-11-30/last.pt"
    row = {
        "dataset": "stanford_cars",
        "model": model,
        "method": "tip-x",
        "support": "susx-sd-16shot-from-the-long-prompt-set",
        "calibration": "val",
        "top1": 71.234,
        "mean_per_class_recall": 70.1,
        "status": "done",
    }
    buf = io.StringIO()
    reporter = progress.RichReporter(console=Console(file=buf, width=80, force_terminal=False))
    reporter.show(results_table(SimpleNamespace(rows=[row, {**row, "method": "zero-shot"}])))
    text = buf.getvalue()
    assert model in text and row["support"] in text and "71.23" in text and "…" not in text
    assert reporter.console.width == 80  # widened for the table only


def test_datasets_list_keeps_every_column_whole_off_a_terminal():
    from susx_cli.datasets.registry import DATASETS

    err = invoke("datasets", "list").stderr  # the test runner's stderr is no terminal
    assert "…" not in err
    for spec in DATASETS.values():
        assert spec.photo_template in err and spec.needs() in err and spec.name in err


def test_a_refusal_names_the_options_and_inputs_that_differ(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "classes.txt").write_text("apple\nmango\n")
    invoke("prompts", "-c", "classes.txt", "-o", "p.json")
    bad = invoke(
        "prompts",
        "-c",
        "classes.txt",
        "-o",
        "p.json",
        "--photo-template",
        "A photo of a {}, a fruit.",
        expect=2,
    )
    assert (
        "p.json exists and was made from other inputs or options "
        '(photo_template "A photo of a {}." -> "A photo of a {}, a fruit.")' in bad.stderr
    ), bad.stderr


def test_fingerprint_changes_are_few_and_short():
    from susx_cli.artifacts import common

    old = common.provenance(
        {"seed": 1, "alpha": 0.5, "model": "RN50", "grid": list(range(30)), "same": True},
        [{"path": "p.json", "kind": "susx.prompts", "sha256": "a" * 64}],
    )
    new = common.provenance(
        {"seed": 2, "alpha": 0.5, "model": "ViT-B-32", "grid": list(range(31)), "same": True},
        [{"path": "q.json", "kind": "susx.prompts", "sha256": "b" * 64}],
    )
    text = common.fingerprint_changes(old, new)  # sorted by name, three at most
    tail = ', model "RN50" -> "ViT-B-32", seed 1 -> 2, and 1 more'
    grid = text.removesuffix(tail)
    assert text.endswith(tail) and grid.startswith("grid [0, 1, 2, ") and grid.count("…") == 2
    assert len(grid) == len("grid ") + 40 + len(" -> ") + 40  # each value cut to 40 characters
    assert common.fingerprint_changes(old, new, limit=5).endswith("input susx.prompts aaaaaaaa -> bbbbbbbb")
    assert common.fingerprint_changes({**old, "options": {"seed": 1}}, {**old, "options": {}}) == (
        "seed 1 -> (not set)"
    )
