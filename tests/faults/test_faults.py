"""Every case of the fault table: a clear one-line error (or success for controls), nothing lost."""

from __future__ import annotations

import shutil

import pytest

from tests.faults.cases import CASES, OPEN
from tests.faults.harness import run_case
from tests.faults.workspace import build_workspace


@pytest.fixture(scope="session")
def pristine(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("faults-pristine"))


def _param(case):
    marks = [pytest.mark.xfail(strict=True, reason="a known open fault")] if case.id in OPEN else []
    if any(str(arg).startswith("http://127.0.0.1") for arg in case.args):  # talks to a loopback server
        marks.append(pytest.mark.slow)
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_fault_case(case, pristine, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(pristine, ws, symlinks=True)
    outcome = run_case(case, ws)
    expected = "clear" if case.expects_error else "ok"
    assert outcome.kind == expected, (
        f"{case.id}: {outcome.kind} ({outcome.detail}); stderr: {outcome.stderr[-500:]}"
    )


def test_table_ids_are_unique_and_open_ids_exist():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert OPEN <= set(ids)
