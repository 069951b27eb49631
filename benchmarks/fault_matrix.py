"""Run the fault-injection table of tests/faults against the CLI and print one row per case and the totals.

    python benchmarks/fault_matrix.py                 # the table and the generated output-path cases
    python benchmarks/fault_matrix.py --only tau      # cases whose id contains 'tau'
    python benchmarks/fault_matrix.py --no-generated  # the hand-written table only

Generated cases (tests/faults/output_cases.py) point every output option of every command, walked from
the Typer app, at foreign files, inputs, other outputs, links, read-only and full disks (the tmpfs cases
need root and are left out otherwise). Columns of the totals, per group: cases tried, clear errors (or
correct results), tracebacks, silent results, unclear errors, hangs, data lost. Target: 0 in the last five.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.faults.cases import CASES  # noqa: E402
from tests.faults.harness import run_case  # noqa: E402
from tests.faults.workspace import build_workspace  # noqa: E402


def _row(totals: Counter[str], name: str, count: int) -> str:
    return (
        f"{name:9s} | {count:11d} | {totals['clear']:13d} | {totals['traceback']:10d} | {totals['silent']:6d} | "
        f"{totals['unclear']:7d} | {totals['hang']:5d} | {totals['data_lost']:9d}"
    )


def _run_table(pristine: Path, tmp: Path, only: str) -> tuple[Counter[str], int]:
    totals: Counter[str] = Counter()
    cases = [c for c in CASES if only in c.id]
    for case in cases:
        ws = tmp / f"ws-{case.id}"
        shutil.copytree(pristine, ws, symlinks=True)
        outcome = run_case(case, ws)
        expected = "clear" if case.expects_error else "ok"
        _count(totals, outcome, (expected,))
        _print(case.id, expected, outcome)
        shutil.rmtree(ws, ignore_errors=True)
    return totals, len(cases)


def _run_generated(pristine: Path, tmp: Path, only: str) -> tuple[Counter[str], int]:
    from tests.faults import output_cases
    from tests.test_cupl_llm import FakeLLM

    totals: Counter[str] = Counter()
    server = FakeLLM()
    try:
        cases = [c for c in output_cases.generated_cases(server.base_url) if only in c.case.id]
        cases = [c for c in cases if output_cases.can_mount() or not c.needs_root]
        output_cases.extend_workspace(pristine)
        for case in cases:
            ws = tmp / "ws-generated"
            shutil.copytree(pristine, ws, symlinks=True)
            outcome = output_cases.run_output_case(case, ws)
            expected = output_cases.expected_kinds(case)
            _count(totals, outcome, expected)
            _print(case.case.id, "/".join(expected), outcome)
            shutil.rmtree(ws, ignore_errors=True)
    finally:
        server.close()
    return totals, len(cases)


def _count(totals: Counter[str], outcome, expected: tuple[str, ...]) -> None:
    kind = outcome.kind
    totals["clear" if kind in expected else ("unclear" if kind in ("clear", "ok") else kind)] += 1


def _print(case_id: str, expected: str, outcome) -> None:
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    detail = outcome.detail or (errors[-1][:90] if errors else f"exit {outcome.exit_code}")
    print(f"{case_id:48s} {expected:9s} {outcome.kind:10s} {detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only cases whose id contains this text")
    parser.add_argument("--no-generated", action="store_true", help="leave the generated output cases out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="susx-faults-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        (tmp / "pristine").mkdir()
        pristine = build_workspace(tmp / "pristine")
        print(f"workspace built in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        print(f"{'case':48s} {'expected':9s} {'outcome':10s} detail")
        groups = [("table", *_run_table(pristine, tmp, args.only))]
        if not args.no_generated:
            groups.append(("generated", *_run_generated(pristine, tmp, args.only)))
    print()
    print("group     | cases tried | clear/correct | tracebacks | silent | unclear | hangs | data lost")
    for name, totals, count in groups:
        print(_row(totals, name, count))
    if len(groups) > 1:
        print(_row(sum((t for _, t, _ in groups), Counter()), "all", sum(c for *_, c in groups)))


if __name__ == "__main__":
    main()
