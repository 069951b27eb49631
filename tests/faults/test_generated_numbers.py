"""Generated numeric fault cases: every number option of every command (``options.number_options``, walked
from the Typer app), given NaN, inf, -1, 0 and a huge value; every grid (``--alpha-grid``) and number held
in text (``--logit-scale``) given NaN, inf, negative, overflowing and zero-step values, each of which must be
refused naming the option; and numbers read back from artifacts (feature rows, prediction indices,
manifest fields) made NaN or out of range. Each case must end in one ``error:`` line (exit != 0) or a
correct run; never a traceback, and every file that was there before is byte-identical after.

Cases that need no model run first (number options are checked before any stage loads one); the
options that reach a model use the tiny random one through cheap base commands in the workspace the output
suite shares (``conftest.output_pristine``, built once per session). The generated cases are marked slow
(``make test`` runs them, ``make test-fast`` leaves them out); the guard tests are not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from susx_cli.method import registry
from tests.faults import output_cases
from tests.faults.harness import Case, Outcome, error_lines, run_case
from tests.faults.options import Param, number_options

TINY = ("--model", "susx-tiny-vit", "--pretrained", "none")
NUMBERS = ("nan", "inf", "-1", "0", "2000000000")  # the last a typo that is still a valid int32
# Text of numbers is parsed by the stage, not by the option parser: none of these may pass.
VALUES = {
    "int": NUMBERS,
    "float": NUMBERS,
    "grid": ("0.1,nan", "inf", "-1", "1e400", "0.1:2:0", "1,2,-3"),
    "number-text": ("nan", "inf", "-1", "0", "1e400"),
}

# A base command per (command, source) that every number option is appended to: cheap, and ending in
# an output that did not exist (the case's outputs are the only paths allowed to change). Options of
# curate's non-folder sources are tried with that source and an input that fails right after the
# options are checked (no model, no network): a refusal of the number then shows before it.
BASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "prompts": (("prompts", "-c", "classes.txt", "-o", "new-p.json"), ("new-p.json",)),
    "curate": (("curate", "p.json", "-o", "new-sup", "--images", "shots"), ("new-sup",)),
    "curate:sd": (
        ("curate", "p.json", "-o", "new-sup", "--source", "sd", "-k", "1", "--sd-model", "./no-such-folder"),
        ("new-sup",),
    ),
    "curate:laion": (("curate", "p.json", "-o", "new-sup", "--source", "laion", "-k", "1"), ("new-sup",)),
    "curate:pool": (
        ("curate", "p.json", "-o", "new-sup", "--source", "pool", "-k", "1", "--pool-images", "no-such-pool"),
        ("new-sup",),
    ),
    "embed": (("embed", "sup", "-o", "new.h5", *TINY), ("new.h5",)),
    "calibrate": (
        ("calibrate", "text.h5", "sup.h5", "-o", "new-cal.json", "--mode", "fixed"),
        ("new-cal.json",),
    ),
    "predict": (
        ("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "new.h5"),
        ("new.h5",),
    ),
    "inspect": (("inspect", "sup"), ()),
    "demo": (("demo", "-o", "new-demo", "--sd-model", "./no-such-folder", *TINY), ("new-demo",)),
    "merge": (("merge", "sup"), ()),
    # The output suite's miniature ImageNet-R download, prepared into a new data root.
    "datasets prepare": (
        ("datasets", "prepare", "imagenet-r", "--from", "inr-download", "-o", "new-data"),
        ("new-data",),
    ),
    # The miniature dataset of the output suite, zero-shot, reusing the work folder its eval run left.
    "eval": (
        (*output_cases.eval_args(), "--work-dir", ".eval-work", "--results-dir", "new-results"),
        (".eval-work", "new-results"),
    ),
}
# calibrate's mode/option consistency and the calibration's numbers belong to the calibration code;
# the fixed mode's three values are given so that one option at a time is the bad one.
FIXED = {"--alpha": "1", "--beta": "2", "--gamma": "0.5"}


def _grid_base(param: Param) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A searching run of a method that has the grid ``param``: its values are read before any work."""
    h, owners = next(v for v in registry.hyperparameter_flags().values() if v[0].grid_flag == param.flag)
    method = owners[0]
    mode = next(m for m in ("loo", "kfold", "val") if m in registry.get(method).modes)  # name-only first
    if param.command == ("calibrate",):
        args = ("calibrate", "text.h5", "sup.h5", "-o", "new-cal.json", "--method", method, "--mode", mode)
        return args, ("new-cal.json",)
    support = ("--support", "folder-shots:2", "--calibration", mode)
    args = output_cases.eval_args(method)
    return (*args, *support, "--work-dir", "new-work", "--results-dir", "new-results"), (
        "new-work",
        "new-results",
    )


def base_for(param: Param) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(arguments, outputs it may write) of the base run ``param`` is appended to; for a curate source
    option, that of the cheapest source using it; None when there is none (a guard test fails then)."""
    command = " ".join(param.command)
    if param.number_kind == "grid":
        return _grid_base(param)
    if command == "curate":
        from susx_cli.sources.registry import cli_params

        users = next((p.sources for p in cli_params() if p.flag == param.flag), None)
        if users is not None:
            source = next(s for s in ("folder", "laion", "pool", "sd") if s in users)
            return BASES["curate" if source == "folder" else f"curate:{source}"]
    return BASES.get(command)


def option_cases() -> list[tuple[Case, str]]:
    """Every number option with every value of its kind; a value that can never be valid must be refused
    with one error line naming the option, the others end in one error line or a correct run.
    Each case comes with the option's number kind."""
    cases = []
    for param in number_options():
        base = base_for(param)
        if base is None:
            continue
        args, outputs = base
        if param.command == ("calibrate",) and param.number_kind in ("int", "float", "number-text"):
            args = (*args, *(x for f, v in FIXED.items() if f != param.flag for x in (f, v)))
        for value in VALUES[param.number_kind]:
            must_fail = param.number_kind in ("grid", "number-text") or value in ("nan", "inf")
            cases.append(
                (
                    Case(
                        id=f"{'-'.join(param.command)}{param.flag}={value}",
                        args=(*args, param.flag, value),
                        expect_exit=2 if must_fail else 0,
                        message=param.flag if param.number_kind == "grid" else "",
                        may_change=outputs,
                        timeout_s=120,
                    ),
                    param.number_kind,
                )
            )
    return cases


OPTION_CASES_KINDS = option_cases()
OPTION_CASES = [case for case, _ in OPTION_CASES_KINDS]
NUMBER_KIND = {case.id: kind for case, kind in OPTION_CASES_KINDS}


def _ids_of(cases):
    return [c.id for c in cases]


def _run(case: Case, pristine: Path, tmp_path: Path):
    ws = tmp_path / "ws"
    shutil.copytree(pristine, ws, symlinks=True)
    return run_case(case, ws)


def test_the_walk_finds_the_number_options():
    found = {(" ".join(p.command), p.flag, p.number_kind) for p in number_options()}
    assert {("curate", "--guidance", "float"), ("curate", "--per-class", "int")} <= found
    assert {("eval", "--tau", "float"), ("embed", "--batch-size", "int")} <= found
    assert {("calibrate", "--alpha-grid", "grid"), ("eval", "--logit-scale", "number-text")} <= found


def test_every_number_option_has_generated_cases():
    """A number option without a base run gets no case: a new option must be given one here (BASES)."""
    covered = {case.args[-2] for case in OPTION_CASES}
    missing = [(p.command, p.flag) for p in number_options() if base_for(p) is None]
    assert not missing, f"add a base run to BASES in {__name__} for: {missing}"
    assert {p.flag for p in number_options()} <= covered
    kinds = {p.number_kind for p in number_options()}
    assert kinds == set(VALUES), f"values for every kind of number: {kinds} vs {set(VALUES)}"


@pytest.mark.slow  # some 370 CLI runs: about 3 min on a loaded 2-core machine
@pytest.mark.parametrize("case", OPTION_CASES, ids=_ids_of(OPTION_CASES))
def test_number_option(case, output_pristine, tmp_path):
    outcome = _run(case, output_pristine, tmp_path)
    kind = option_outcome(case, outcome)
    assert kind in expected_kinds(case), (
        f"{case.id}: {outcome.kind} ({outcome.detail}); stderr: {outcome.stderr[-600:]}"
    )


def expected_kinds(case: Case) -> tuple[str, ...]:
    return ("clear",) if case.expects_error else ("clear", "ok")


def option_outcome(case: Case, outcome: Outcome) -> str:
    """The harness outcome, judged for a number option case: where a correct run is allowed, a refusal for
    another reason in one clear line is clear too; NaN or inf given to a number option must be refused as
    not finite (or not an integer), else the refusal is unclear."""
    kind = outcome.kind
    if kind == "unclear" and not case.message and len(error_lines(outcome.stderr)) == 1:
        kind = "clear"
    reason = "finite" in outcome.stderr or "valid integer" in outcome.stderr
    if (
        kind == "clear"
        and value_is_nan_or_inf(case)
        and NUMBER_KIND[case.id] in ("int", "float")
        and not reason
    ):
        kind = "unclear"
    return kind


def value_is_nan_or_inf(case: Case) -> bool:
    return case.args[-1] in ("nan", "inf")


# ------------------------------------------------------------------ numbers read back from artifacts


def _edit_h5(name: str, edit):
    def setup(ws: Path) -> None:
        with h5py.File(ws / name, "a") as f:
            edit(f)

    return setup


def _set(dataset: str, index, value):
    def edit(f):
        f[dataset][index] = value

    return edit


def _edit_manifest(edit):
    def setup(ws: Path) -> None:
        manifest = ws / "sup" / "manifest.jsonl"
        rows = [json.loads(line) for line in manifest.read_text().splitlines()]
        edit(rows)
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))

    return setup


def _row0(field, value):
    def edit(rows):
        rows[0][field] = value

    return edit


def _tear_manifest(ws: Path) -> None:
    manifest = ws / "sup" / "manifest.jsonl"
    manifest.write_bytes(manifest.read_bytes()[:-20])


def _duplicate_manifest_row(ws: Path) -> None:
    manifest = ws / "sup" / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join([*lines[:-1], lines[-2], lines[-1]]))


def _drop_manifest_row(ws: Path) -> None:
    manifest = ws / "sup" / "manifest.jsonl"
    manifest.write_text("".join(manifest.read_text().splitlines(keepends=True)[:-1]))


PREDICT = ("predict", "text.h5", "test.h5", "-s", "sup.h5", "--calibration", "cal.json", "-o", "new.h5")
EMBED_SUP = ("embed", "sup", "-o", "new.h5", *TINY)
ARTIFACT_CASES = [
    Case("features-nan-row", PREDICT, message="nan", setup=_edit_h5("sup.h5", _set("features", 0, np.nan))),
    Case("queries-inf-row", PREDICT, message="nan", setup=_edit_h5("test.h5", _set("features", 1, np.inf))),
    Case(
        "predictions-class-minus-3",
        ("export", "pred.h5", "-o", "p.csv"),
        message="class index -3",
        setup=_edit_h5("pred.h5", _set("predicted", 0, -3)),
    ),
    Case(
        "predictions-top5-past-classes",
        ("export", "pred.h5", "-o", "p.csv"),
        message="outside",
        setup=_edit_h5("pred.h5", _set("top5", (0, 0), 4)),
    ),
    Case(
        "predictions-label-past-classes",
        ("export", "pred.h5", "-o", "p.csv"),
        message="outside",
        setup=_edit_h5("pred.h5", _set("labels", 0, 99)),
    ),
    Case(
        "predictions-nan-score",
        ("export", "pred.h5", "-o", "p.csv"),
        message="nan",
        setup=_edit_h5("pred.h5", _set("top5_scores", (0, 0), np.nan)),
    ),
    Case("manifest-negative-width", EMBED_SUP, message="width", setup=_edit_manifest(_row0("width", -4))),
    Case(
        "manifest-nan-score", EMBED_SUP, message="score", setup=_edit_manifest(_row0("score", float("nan")))
    ),
    Case(
        "manifest-float-class",
        EMBED_SUP,
        message="class_index",
        setup=_edit_manifest(_row0("class_index", 0.5)),
    ),
    Case("manifest-torn", EMBED_SUP, message="completion marker", setup=_tear_manifest),
    Case("manifest-duplicated-row", EMBED_SUP, message="completion marker", setup=_duplicate_manifest_row),
    Case("manifest-row-dropped", EMBED_SUP, message="completion marker", setup=_drop_manifest_row),
]


@pytest.mark.slow  # shares the option cases' workspace, which takes about a minute to build
@pytest.mark.parametrize("case", ARTIFACT_CASES, ids=_ids_of(ARTIFACT_CASES))
def test_number_read_from_an_artifact(case, output_pristine, tmp_path):
    outcome = _run(case, output_pristine, tmp_path)
    assert outcome.kind == "clear", (
        f"{case.id}: {outcome.kind} ({outcome.detail}); stderr: {outcome.stderr[-600:]}"
    )
