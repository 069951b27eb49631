"""Run the fault-injection table of tests/faults against the CLI and print one row per case and the totals.

    python benchmarks/fault_matrix.py                   # the table and every generated group
    python benchmarks/fault_matrix.py --only tau        # cases whose id contains 'tau'
    python benchmarks/fault_matrix.py --groups table    # the hand-written table only

Groups: ``table`` (tests/faults/cases.py); ``outputs`` (tests/faults/output_cases.py: every output and
read-then-written path of every command, walked from the Typer app, pointed at foreign files, inputs,
other outputs, links, read-only and full disks; the tmpfs cases need root and are left out otherwise);
``numbers`` (tests/faults/test_generated_numbers.py: every number option and grid given NaN, inf,
negative, zero and huge values, and numbers read back from artifacts); ``network``
(tests/faults/test_generated_network.py: every outbound client against a trickling server and a name
with a public and a private address). Columns of the totals, per group: cases tried, clear errors (or
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
from tests.faults.harness import Case, run_case  # noqa: E402
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


def _run_cases(label: str, cases, pristine: Path, tmp: Path, run, expected) -> tuple[Counter[str], int]:
    """Run each case in a fresh copy of ``pristine`` with ``run(case, ws) -> Outcome``; ``expected(case,
    outcome)``: (the outcome as judged, the kinds that count as clear or correct)."""
    totals: Counter[str] = Counter()
    for case in cases:
        ws = tmp / f"ws-{label}"
        shutil.copytree(pristine, ws, symlinks=True)
        outcome = run(case, ws)
        judged, allowed = expected(case, outcome)
        outcome.kind = judged
        _count(totals, outcome, allowed)
        inner = getattr(case, "case", case)
        _print(inner.id, "/".join(allowed), outcome)
        shutil.rmtree(ws, ignore_errors=True)
    return totals, len(cases)


def _run_outputs(pristine: Path, tmp: Path, only: str) -> tuple[Counter[str], int]:
    from tests.faults import output_cases
    from tests.sources.test_cupl_llm import FakeLLM

    server = FakeLLM()
    try:
        cases = output_cases.generated_cases(server.base_url) + output_cases.input_output_cases()
        cases = [c for c in cases if only in c.case.id and (output_cases.can_mount() or not c.needs_root)]
        return _run_cases(
            "outputs",
            cases,
            pristine,
            tmp,
            output_cases.run_output_case,
            lambda c, o: (o.kind, output_cases.expected_kinds(c)),
        )
    finally:
        server.close()


def _run_numbers(pristine: Path, tmp: Path, only: str) -> tuple[Counter[str], int]:
    from tests.faults import test_generated_numbers as numbers

    options = [c for c in numbers.OPTION_CASES if only in c.id]
    totals, count = _run_cases(
        "numbers",
        options,
        pristine,
        tmp,
        run_case,
        lambda c, o: (numbers.option_outcome(c, o), numbers.expected_kinds(c)),
    )
    artifacts = [c for c in numbers.ARTIFACT_CASES if only in c.id]
    more, more_count = _run_cases(
        "numbers", artifacts, pristine, tmp, run_case, lambda c, o: (o.kind, ("clear",))
    )
    return totals + more, count + more_count


def _run_network(tmp: Path, only: str) -> tuple[Counter[str], int]:
    """Every outbound client against a trickling loopback server and a name resolving to a public and a
    private address (``tests/faults/test_generated_network``); past its deadline plus margin is a hang."""
    import json
    import os
    import socket

    from susx_cli.net import fetch
    from tests.faults import test_generated_network as net

    totals: Counter[str] = Counter()
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(net.FAKE_DNS + "\ninstall()\n")
    saved = (socket.getaddrinfo, socket.socket.connect, fetch.DEFAULT_TIMEOUT, dict(os.environ))
    count = 0
    try:
        fetch.DEFAULT_TIMEOUT = net.DEADLINE
        for name in net.NET_CASES:
            for kind in ("trickle", "mixed"):
                if only not in f"{kind}-{name}":
                    continue
                spec = net.NET_CASES[name]
                server = spec.server()
                ws = net._workspace(tmp / f"ws-net-{name}-{kind}")
                args, message = spec.args(server.url), spec.trickle_message
                if kind == "mixed":
                    args, message = _mixed(net, name, spec, server)
                    plan = {"mixed.test": [[net.PUBLIC, net.PRIVATE]]}
                    if name == net.clients.KNN_QUERY.name:
                        plan["mixed.test"] = [["127.0.0.1"], [net.PUBLIC, net.PRIVATE]]
                    os.environ["SUSX_TEST_DNS"] = json.dumps(plan)
                    os.environ["PYTHONPATH"] = os.pathsep.join(
                        filter(None, [str(site), saved[3].get("PYTHONPATH")])
                    )
                    namespace: dict = {}
                    exec(compile(net.FAKE_DNS, "fake_dns", "exec"), namespace)
                    socket.getaddrinfo, socket.socket.connect = (
                        namespace["fake_getaddrinfo"],
                        namespace["guarded_connect"],
                    )
                start = time.monotonic()
                try:
                    outcome = run_case(Case(f"{kind}-{name}", args, message=message, timeout_s=120), ws)
                finally:
                    socket.getaddrinfo, socket.socket.connect = saved[0], saved[1]
                    os.environ.clear()
                    os.environ.update(saved[3])
                    server.close()
                took = time.monotonic() - start
                if outcome.kind == "clear" and took > net.DEADLINE + spec.margin:
                    outcome.kind, outcome.detail = "hang", f"{took:.1f} s"
                if kind == "mixed" and server.hits["/img"]:
                    outcome.kind, outcome.detail = "silent", "connected to the mixed address"
                _count(totals, outcome, ("clear",))
                _print(f"{kind}-{name}", "clear", outcome)
                count += 1
    finally:
        fetch.DEFAULT_TIMEOUT = saved[2]
    return totals, count


def _mixed(net, name: str, spec, server) -> tuple[tuple, str]:
    """The command and expected message of the mixed-address case of client ``name``."""
    mixed = f"http://mixed.test:{server.server_port}"
    if name == net.clients.IMAGE.name:  # the backend is the user's; the candidate URLs it returns are not
        server.knn_target = f"{mixed}/img"
        return net._laion(server.url), "no image"
    args = spec.args(mixed)
    if name == net.clients.CUPL_FILE.name:
        args = (*args[:-1], f"{mixed}/img")
    return args, "resolves to both public and private addresses"


def _count(totals: Counter[str], outcome, expected: tuple[str, ...]) -> None:
    kind = outcome.kind
    totals["clear" if kind in expected else ("unclear" if kind in ("clear", "ok") else kind)] += 1


def _print(case_id: str, expected: str, outcome) -> None:
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    detail = outcome.detail or (errors[-1][:90] if errors else f"exit {outcome.exit_code}")
    print(f"{case_id:48s} {expected:9s} {outcome.kind:10s} {detail}")


GROUPS = ("table", "outputs", "numbers", "network")


def print_coverage() -> None:
    """One line per output, read-then-written or number option of every command: what its generated cases
    try (NONE: a gap)."""
    from tests.faults import output_cases
    from tests.faults import test_generated_numbers as numbers
    from tests.faults.options import walk

    tried: dict[str, list[str]] = {}
    for case in output_cases.generated_cases("") + output_cases.input_output_cases():
        key, kind = case.case.id.rsplit(":", 1)  # report--csv:foreign-file, merge:target:link-foreign
        tried.setdefault(key, []).append(kind)
    for case in numbers.OPTION_CASES:
        key, value = case.id.split("=", 1)  # eval--tau=nan
        tried.setdefault(key, []).append(value)
    wanted = [p for p in walk() if (p.role in ("output", "input-output") or p.number_kind) and not p.hidden]
    gaps = 0
    for p in wanted:
        command = "-".join(p.command)
        kinds = tried.get(f"{command}:{p.flag}" if p.role == "input-output" else f"{command}{p.flag}", [])
        gaps += not kinds
        print(
            f"{' '.join(p.command):10s} {p.flag:24s} {p.number_kind or p.role:12s} {', '.join(kinds) or 'NONE'}"
        )
    print(f"{len(wanted)} options, {gaps} without generated cases")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only cases whose id contains this text")
    parser.add_argument(
        "--coverage", action="store_true", help="list what each option is tried with, and stop"
    )
    parser.add_argument("--groups", default=",".join(GROUPS), help=f"comma-separated, of {', '.join(GROUPS)}")
    args = parser.parse_args()
    if args.coverage:
        print_coverage()
        return
    chosen = [g for g in args.groups.split(",") if g]
    unknown = set(chosen) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; use {', '.join(GROUPS)}")
    groups = []
    with tempfile.TemporaryDirectory(prefix="susx-faults-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        (tmp / "pristine").mkdir()
        pristine = build_workspace(tmp / "pristine")
        print(f"workspace built in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        print(f"{'case':48s} {'expected':9s} {'outcome':10s} detail")
        timed = []
        for group in chosen:
            began = time.perf_counter()
            if group == "table":
                groups.append(("table", *_run_table(pristine, tmp, args.only)))
            elif group == "network":
                groups.append(("network", *_run_network(tmp, args.only)))
            else:
                if not (pristine / "cars").exists():  # the output suite's dataset and eval results
                    from tests.faults import output_cases

                    output_cases.extend_workspace(pristine)
                run = _run_outputs if group == "outputs" else _run_numbers
                groups.append((group, *run(pristine, tmp, args.only)))
            timed.append((group, time.perf_counter() - began))
    print()
    print("group     | cases tried | clear/correct | tracebacks | silent | unclear | hangs | data lost")
    for name, totals, count in groups:
        print(_row(totals, name, count))
    if len(groups) > 1:
        print(_row(sum((t for _, t, _ in groups), Counter()), "all", sum(c for *_, c in groups)))
    print("; ".join(f"{g} {t:.0f} s" for g, t in timed))


if __name__ == "__main__":
    main()
