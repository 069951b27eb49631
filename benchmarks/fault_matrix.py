"""Run the fault-injection table of tests/faults against the CLI and print one row per case and the totals.

    python benchmarks/fault_matrix.py            # every case
    python benchmarks/fault_matrix.py --only tau  # cases whose id contains 'tau'

Columns of the totals: cases tried, clear errors (or correct successes of the valid controls),
tracebacks, silent results, unclear errors, hangs, data lost. Target: 0 in the last five.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only cases whose id contains this text")
    args = parser.parse_args()
    cases = [c for c in CASES if args.only in c.id]
    with tempfile.TemporaryDirectory(prefix="susx-faults-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        (tmp / "pristine").mkdir()
        pristine = build_workspace(tmp / "pristine")
        print(f"workspace built in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        totals: Counter[str] = Counter()
        print(f"{'case':40s} {'expected':9s} {'outcome':10s} detail")
        for case in cases:
            ws = tmp / f"ws-{case.id}"
            shutil.copytree(pristine, ws, symlinks=True)
            outcome = run_case(case, ws)
            expected = "clear" if case.expects_error else "ok"
            kind = outcome.kind
            totals["clear" if kind in ("clear", "ok") and kind == expected else kind] += 1
            errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
            detail = outcome.detail or (errors[-1][:90] if errors else f"exit {outcome.exit_code}")
            print(f"{case.id:40s} {expected:9s} {kind:10s} {detail}")
            shutil.rmtree(ws, ignore_errors=True)
    print()
    print("cases tried | clear/correct | tracebacks | silent | unclear | hangs | data lost")
    print(
        f"{len(cases):11d} | {totals['clear']:13d} | {totals['traceback']:10d} | {totals['silent']:6d} | "
        f"{totals['unclear']:7d} | {totals['hang']:5d} | {totals['data_lost']:9d}"
    )


if __name__ == "__main__":
    main()
