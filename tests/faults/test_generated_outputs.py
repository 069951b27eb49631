"""Generated output-path faults: every output option of every command, walked from the Typer app, pointed
at foreign files and folders, its own inputs, another output, links, read-only and full disks and a parent
that is a file (cases in ``output_cases``): one clear line or a correct result, nothing the user had lost."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from tests.faults import output_cases
from tests.faults.options import output_paths, walk

# The fake LLM's address is only known once it runs: each case gets it in its environment when it runs.
CASES = output_cases.generated_cases(llm_url="") + output_cases.input_output_cases()


def _param(case: output_cases.OutputCase):
    marks = [pytest.mark.skipif(not output_cases.can_mount(), reason="tmpfs mounts need root")]
    return pytest.param(case, id=case.case.id, marks=marks if case.needs_root else [])


@pytest.mark.slow  # some 150 CLI runs in copies of a workspace that takes about a minute to build
@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_output_case(case, output_pristine, llm_url, tmp_path):
    case = dataclasses.replace(case, env={**case.env, "OPENAI_BASE_URL": llm_url})
    ws = tmp_path / "ws"
    shutil.copytree(output_pristine, ws, symlinks=True)
    outcome = output_cases.run_output_case(case, ws)
    assert outcome.kind in output_cases.expected_kinds(case), (
        f"{case.case.id}: {outcome.kind} ({outcome.detail}); args {case.case.args}; "
        f"stderr: {outcome.stderr[-600:]}"
    )


def test_every_path_parameter_is_tagged_input_or_output():
    """A Path option or argument must say whether the command reads or writes it (commands/_common)."""
    untagged = [(p.command, p.flag) for p in walk() if p.is_path and p.role is None]
    assert not untagged, f"tag these with input_option / output_option / path_option: {untagged}"
    assert {p.role for p in walk() if p.is_path} <= {"input", "output", "input-output"}


def test_every_output_option_has_a_base():
    """Each output option gets the generated cases only through a base run: a new one must add its own."""
    table = output_cases.bases()
    missing = [(p.command, p.flag) for p in output_paths() if (p.command, p.flag) not in table]
    assert not missing, f"add a Base for these to tests/faults/output_cases.py: {missing}"
    stale = set(table) - {(p.command, p.flag) for p in output_paths()}
    assert not stale, f"bases of options the CLI no longer has: {stale}"


def test_every_input_output_path_has_a_base():
    """A path read and then written gets its cases through a base run too: a new one must add its own."""
    table = output_cases.input_output_bases()
    in_out = {(p.command, p.flag) for p in walk() if p.role == "input-output" and not p.hidden}
    assert in_out == set(table), f"input-output paths vs bases in tests/faults/output_cases.py: {in_out}"


def test_the_walk_sees_the_output_options_we_know():
    found = {(" ".join(p.command), p.flag) for p in output_paths()}
    assert {("report", "--long"), ("inspect", "--confusion"), ("prompts", "--llm-cache")} <= found
    assert all(isinstance(p.command, tuple) and p.flags for p in walk())
    assert Path in {p.base_type for p in walk()}
