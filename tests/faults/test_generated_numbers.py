"""Generated numeric fault cases: every number option of every command, walked from the Typer app, given
NaN, inf, -1, 0 and a huge value; and numbers read back from artifacts (feature rows, prediction indices,
manifest fields) made NaN or out of range. Each case must end in one ``error:`` line (exit != 0) or a
correct run; never a traceback, and every file that was there before is byte-identical after.

Cases that need no model run first (number options are checked before any stage loads one); the
options that reach a model use the tiny random one through cheap base commands in one shared workspace.
"""

from __future__ import annotations

import json
import shutil
import typing
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.faults.harness import Case, run_case
from tests.faults.workspace import build_workspace

TINY = ("--model", "susx-tiny-vit", "--pretrained", "none")
VALUES = ("nan", "inf", "-1", "0", "2000000000")  # the last a typo that is still a valid int32

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
    "eval": (("eval", "--dataset", "no-such-dataset.json", *TINY), ("susx-work", "susx-results")),
}
# calibrate's mode/option consistency and the calibration's numbers belong to the calibration code;
# the fixed mode's three values are given so that one option at a time is the bad one.
FIXED = {"--alpha": "1", "--beta": "2", "--gamma": "0.5"}


def _number_kind(annotation: typing.Any) -> type | None:
    """int or float when the option takes a number (or a list of them), else None."""
    args = [a for a in typing.get_args(annotation) or (annotation,) if a is not type(None)]
    if typing.get_origin(annotation) is list:
        args = list(typing.get_args(annotation))
    return next((a for a in args if a in (int, float)), None)


def number_options() -> Iterator[tuple[str, str, type, str | None]]:
    """(command path, long flag, int or float, help panel) for every number option of the app."""
    import typer

    from susx_cli.cli import app

    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
            return
        for param in command.params:
            kind = _number_kind(param.type_descriptor.annotation)
            if kind is not None and getattr(param, "opts", None):
                flag = max(param.opts, key=len)
                yield " ".join(path), flag, kind, getattr(param, "rich_help_panel", None)

    yield from walk(typer.main.get_command(app), [])


def _base(command: str, flag: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The base command for ``flag``; for a curate source option, that of the cheapest source using it."""
    if command == "curate":
        from susx_cli.sources.registry import cli_params

        users = next((p.sources for p in cli_params() if p.flag == flag), None)
        if users is not None:
            source = next(s for s in ("folder", "laion", "pool", "sd") if s in users)
            return BASES["curate" if source == "folder" else f"curate:{source}"]
    return BASES.get(command)


def option_cases() -> list[Case]:
    cases = []
    for command, flag, _kind, _panel in number_options():
        base = _base(command, flag)
        if base is None:
            continue
        args, outputs = base
        if command == "calibrate":
            args = (*args, *(x for f, v in FIXED.items() if f != flag for x in (f, v)))
        for value in VALUES:
            # NaN and inf are never a valid setting; an int option refuses them in the parser.
            must_fail = value in ("nan", "inf")
            cases.append(
                Case(
                    id=f"{command.replace(' ', '-')}{flag}={value}",
                    args=(*args, flag, value),
                    expect_exit=2 if must_fail else 0,
                    may_change=outputs,
                    timeout_s=60,
                )
            )
    return cases


OPTION_CASES = option_cases()


def _ids_of(cases):
    return [c.id for c in cases]


@pytest.fixture(scope="session")
def numbers_ws(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("numbers-pristine"))


def _run(case: Case, pristine: Path, tmp_path: Path):
    ws = tmp_path / "ws"
    shutil.copytree(pristine, ws, symlinks=True)
    return run_case(case, ws)


def test_the_walk_finds_the_number_options():
    found = {(c, f) for c, f, _, _ in number_options()}
    assert {("curate", "--guidance"), ("curate", "--per-class"), ("calibrate", "--alpha")} <= found
    assert {("eval", "--tau"), ("embed", "--batch-size")} <= found


@pytest.mark.parametrize("case", OPTION_CASES, ids=_ids_of(OPTION_CASES))
def test_number_option(case, numbers_ws, tmp_path):
    outcome = _run(case, numbers_ws, tmp_path)
    allowed = ("clear",) if case.expects_error else ("clear", "ok")
    kind = outcome.kind
    # A refusal that is one clear line but names another message is still a clear refusal here.
    if kind == "unclear" and len([x for x in outcome.stderr.splitlines() if x.startswith("error:")]) == 1:
        kind = "clear"
    assert kind in allowed, f"{case.id}: {outcome.kind} ({outcome.detail}); stderr: {outcome.stderr[-600:]}"
    if value_is_nan_or_inf(case):
        assert "finite" in outcome.stderr or "valid integer" in outcome.stderr, outcome.stderr[-300:]


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


@pytest.mark.parametrize("case", ARTIFACT_CASES, ids=_ids_of(ARTIFACT_CASES))
def test_number_read_from_an_artifact(case, numbers_ws, tmp_path):
    outcome = _run(case, numbers_ws, tmp_path)
    assert outcome.kind == "clear", (
        f"{case.id}: {outcome.kind} ({outcome.detail}); stderr: {outcome.stderr[-600:]}"
    )
