"""The rules of the one guarded writer (artifacts/outputs.py), each shown on the case that used to lose data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from susx_cli.artifacts import outputs
from tests.faults.output_cases import LLM_KEY, LLM_KEY_ENV, RESULT_FILE
from tests.helpers import invoke

USER_TEXT = "the user's own notes\nsecond line without a newline at the end"


@pytest.fixture()
def ws(output_pristine, tmp_path, monkeypatch):
    root = tmp_path / "ws"
    shutil.copytree(output_pristine, root, symlinks=True)
    monkeypatch.chdir(root)
    (root / "notes.txt").write_text(USER_TEXT)
    return root


def _one_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_confusion_onto_its_own_predictions_is_refused(ws):
    before = (ws / "pred.h5").read_bytes()
    line = _one_error(invoke("inspect", "pred.h5", "--confusion", "pred.h5", expect=2))
    assert "--confusion pred.h5 is also an input" in line
    assert (ws / "pred.h5").read_bytes() == before


@pytest.mark.parametrize(
    "args",
    [
        ("calibrate", "text.h5", "sup.h5", "-o", "c.json", "--alpha-grid", "1", "--heatmap", "notes.txt"),
        ("calibrate", "text.h5", "sup.h5", "-o", "c.json", "--heatmap", "notes.txt", "--overwrite"),
        ("inspect", "sup", "--contact-sheet", "notes.txt"),
        ("export", "pred.h5", "-o", "notes.txt", "--overwrite"),
        ("report", "results", "-f", "csv", "-o", "notes.txt"),
        ("report", "results", "-o", "notes.txt"),
    ],
    ids=["heatmap", "heatmap-overwrite", "contact-sheet", "export-overwrite", "report-csv", "report-md"],
)
def test_a_user_file_is_never_replaced(ws, args):
    line = _one_error(invoke(*args, expect=2))
    assert "notes.txt exists and is not a file susx wrote" in line and "--overwrite" not in line
    assert (ws / "notes.txt").read_text() == USER_TEXT


def test_report_refuses_to_write_over_a_result_it_reads(ws):
    before = (ws / RESULT_FILE).read_bytes()
    line = _one_error(invoke("report", "results", "-f", "csv", "-o", RESULT_FILE, expect=2))
    assert "also an input" in line and (ws / RESULT_FILE).read_bytes() == before


def test_an_llm_cache_susx_did_not_create_is_not_cut_or_appended_to(ws, llm_url, monkeypatch):
    monkeypatch.setenv(LLM_KEY_ENV, LLM_KEY)
    args = ("prompts", "-c", "classes.txt", "-o", "llm.json", "--llm", "--llm-base-url", llm_url)
    args += ("--llm-model", "fake-llm", "--llm-key-env", LLM_KEY_ENV, "--llm-questions", "generic")
    args += ("--llm-samples", "1", "--llm-concurrency", "1")
    line = _one_error(invoke(*args, "--llm-cache", "notes.txt", expect=2))
    assert "notes.txt exists and is not a susx.llm_cache file" in line
    assert (ws / "notes.txt").read_text() == USER_TEXT and not (ws / "llm.json").exists()
    invoke(*args, "--llm-cache", "cache.jsonl")  # a new cache starts with its header line
    first = json.loads((ws / "cache.jsonl").read_text().splitlines()[0])
    assert first == outputs.jsonl_header(outputs.LLM_CACHE)
    invoke(*args, "--llm-cache", "cache.jsonl", "-o", "llm2.json")  # and susx's own cache is reused


def test_curate_overwrite_keeps_user_files_under_parts_and_hidden_ones(ws):
    invoke("curate", "p.json", "-o", "sup2", "--images", "shots")
    for rel in ("parts/keep.txt", "parts/notes/deep.txt", ".hidden-notes"):
        (ws / "sup2" / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / "sup2" / rel).write_text("mine")
        line = _one_error(
            invoke("curate", "p.json", "-o", "sup2", "--images", "shots", "--overwrite", expect=2)
        )
        assert rel in line and (ws / "sup2" / rel).read_text() == "mine"
        (ws / "sup2" / rel).unlink()
    invoke("curate", "p.json", "-o", "sup2", "--images", "shots", "--seed", "3", "--overwrite")


def test_curate_overwrite_works_through_a_symlinked_folder(ws):
    invoke("curate", "p.json", "-o", "real-sup", "--images", "shots")
    (ws / "linked-sup").symlink_to("real-sup")
    for seed in ("4", "5"):  # twice: a failed swap used to keep failing
        invoke("curate", "p.json", "-o", "linked-sup", "--images", "shots", "--seed", seed, "--overwrite")
        assert (ws / "linked-sup").is_symlink() and (ws / "linked-sup" / "_SUCCESS.json").is_file()
    assert json.loads((ws / "real-sup" / "classes.json").read_text())["options"]["seed"] == 5
    assert not list(ws.glob(".real-sup.*")) and not list(ws.glob(".linked-sup.*"))


def test_reports_and_pictures_are_replaced_by_the_command_that_wrote_them(ws):
    args = ("report", "results", "-o", "r.md", "--long", "l.csv", "--chart", "c.png")
    invoke(*args)
    invoke("report", "results", "-f", "csv", "-o", "r.csv")
    invoke("report", "results", "-f", "latex", "-o", "r.tex")
    assert outputs.text_kind(ws / "r.md") == outputs.REPORT_MARKDOWN
    assert outputs.text_kind(ws / "r.csv") == outputs.REPORT_CSV
    assert outputs.text_kind(ws / "r.tex") == outputs.REPORT_LATEX
    assert outputs.text_kind(ws / "l.csv") == outputs.REPORT_LONG_CSV
    assert outputs.png_kind(ws / "c.png") == outputs.CHART
    invoke(*args)  # its own outputs: replaced
    invoke("inspect", "sup", "--contact-sheet", "sheet.png")
    assert outputs.png_kind(ws / "sheet.png") == outputs.CONTACT_SHEET
    invoke("inspect", "sup", "--contact-sheet", "sheet.png")
    # Another susx picture: inspect has no --overwrite, so it is refused and left as it was.
    before = (ws / "c.png").read_bytes()
    line = _one_error(invoke("inspect", "pred.h5", "--confusion", "c.png", expect=2))
    assert "holds a susx.chart file" in line and (ws / "c.png").read_bytes() == before
    # A CSV of another kind: report's CSV refuses the export table.
    invoke("export", "pred.h5", "-o", "preds.csv")
    line = _one_error(invoke("report", "results", "-f", "csv", "-o", "preds.csv", expect=2))
    assert "susx.predictions_csv" in line


def test_two_outputs_on_one_path_are_refused(ws):
    line = _one_error(
        invoke("report", "results", "-f", "csv", "-o", "same.csv", "--long", "same.csv", expect=2)
    )
    assert "-o/--output and --long both name same.csv" in line and not (ws / "same.csv").exists()


def test_marks_are_read_back_and_nothing_else_counts(tmp_path):
    (tmp_path / "plain.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (tmp_path / "plain.csv").write_text("# a comment of the user's\na,b\n")
    (tmp_path / "fake.md").write_text("<!-- susx.report_markdown but not closed\n")
    (tmp_path / "cache.jsonl").write_text('{"key": "k", "answer": "a"}\n')
    assert outputs.png_kind(tmp_path / "plain.png") is None
    assert (
        outputs.text_kind(tmp_path / "plain.csv") is None and outputs.text_kind(tmp_path / "fake.md") is None
    )
    assert outputs.jsonl_kind(tmp_path / "cache.jsonl") is None
    with pytest.raises(Exception, match="not a susx.llm_cache file"):
        outputs.claim_append(tmp_path / "cache.jsonl", outputs.LLM_CACHE, option="--llm-cache")
    assert (
        outputs.text_kind(_write(tmp_path / "ok.csv", outputs.text_mark(outputs.REPORT_CSV, "csv")))
        == outputs.REPORT_CSV
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(text + "a,b\n")
    return path


def test_an_artifact_of_another_kind_is_replaced_only_with_overwrite(ws):
    before = (ws / "cal.json").read_bytes()
    line = _one_error(invoke("prompts", "-c", "classes.txt", "-o", "cal.json", expect=2))
    assert "susx.calibration" in line and "--overwrite" in line and (ws / "cal.json").read_bytes() == before
    invoke("prompts", "-c", "classes.txt", "-o", "cal.json", "--overwrite")
    assert json.loads((ws / "cal.json").read_text())["kind"] == "susx.prompts"
    line = _one_error(
        invoke("embed", "p.json", "-o", "val.h5", "--model", "susx-tiny-vit", "-p", "none", expect=2)
    )
    assert "susx.image_features" in line and "--overwrite" in line
