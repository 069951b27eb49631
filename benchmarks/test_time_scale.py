"""Benchmark: TDA and DMN-ZS on an ImageNet-size stream, blocked against the per-query loop.

Random unit features (n queries, C classes, D dimensions, float32, one torch thread by default) and a
seeded stream order. Each measurement runs in its own interpreter so that its peak memory (ru_maxrss of
the child, read with wait4) and CPU time belong to it alone:

- tda: ``tda.tda_logits`` (two-phase blocked design) over the whole stream; target <= 30 s on one core;
- dmn: ``dmn.dmn_scores`` (blocked, Gram-matrix norms) over the whole stream; target <= 120 s;
- tda-loop / dmn-loop: the per-query loops (``tda_logits_sequential``, ``dmn_scores_sequential``) on
  the first --loop-n / --dmn-loop-n positions of a stream of that length; their cost per query does not
  depend on how full the preallocated caches are, so the time is extrapolated linearly to n.

Each timed phase reports wall and CPU seconds of the call itself (inputs excluded), and the child's peak
RSS (torch's import and the inputs included; target <= 2 GB), beside its peak after the import and after
the inputs, so that the method's own memory is the difference. With a shared machine the CPU time is the steadier figure.

    python benchmarks/test_time_scale.py            # n=50,000, C=1,000, D=1,024
    python benchmarks/test_time_scale.py --quick    # a small smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("tda", "dmn", "tda-loop", "dmn-loop")
TARGETS = {"tda": 30.0, "dmn": 120.0}  # seconds on one core at the full size
PEAK_TARGET_MIB = 2048.0


def make_stream(n: int, C: int, D: int, seed: int):
    """Random unit float32 queries (n, D) and text weights (C, D), and a seeded permutation order (n,)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    text_weights = torch.nn.functional.normalize(torch.randn(C, D, generator=gen), dim=1)
    queries = torch.empty(n, D)
    for start in range(0, n, 8192):  # in chunks: keeps the generator's temporaries small
        chunk = torch.randn(min(8192, n - start), D, generator=gen)
        queries[start : start + len(chunk)] = torch.nn.functional.normalize(chunk, dim=1)
    return queries, text_weights, torch.randperm(n, generator=gen)


def own_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_phase(phase: str, args: argparse.Namespace) -> dict:
    """Inside the child: build the inputs, time one call, return its figures."""
    import torch

    from susx_cli.method import dmn, tda

    if args.threads:
        torch.set_num_threads(args.threads)
    after_import = own_peak_mib()
    n = {"tda-loop": args.loop_n, "dmn-loop": args.dmn_loop_n}.get(phase, args.n)
    queries, text_weights, order = make_stream(n, args.C, args.D, args.seed)
    call = {
        "tda": lambda: tda.tda_logits(queries, text_weights, order),
        "dmn": lambda: dmn.dmn_scores(queries, text_weights, order),
        "tda-loop": lambda: tda.tda_logits_sequential(queries, text_weights, order),
        "dmn-loop": lambda: dmn.dmn_scores_sequential(queries, text_weights, order),
    }[phase]
    wall, cpu = time.perf_counter(), time.process_time()
    before_call = own_peak_mib()
    call()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    scale = args.n / n  # extrapolation of a loop on a prefix to the whole stream
    return dict(
        phase=phase,
        queries=n,
        wall_s=wall * scale,
        cpu_s=cpu * scale,
        extrapolated=scale != 1,
        import_mib=after_import,
        inputs_mib=before_call,
    )


def in_child(phase: str, args: argparse.Namespace) -> dict:
    """Run one phase in a fresh interpreter; add the child's peak RSS as wait4 reports it."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_phase", phase]
    for key in ("n", "C", "D", "seed", "threads", "loop_n", "dmn_loop_n"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"phase {phase} failed (exit {os.waitstatus_to_exitcode(status)})")
    return dict(json.loads(text.strip().splitlines()[-1]), peak_mib=usage.ru_maxrss / 1024.0)


def report(results: dict[str, dict], args: argparse.Namespace) -> None:
    print(f"n={args.n} C={args.C} D={args.D} threads={args.threads} float32")
    print(f"{'phase':<10} {'wall s':>9} {'cpu s':>9} {'peak MiB':>9} {'import':>7} {'inputs':>7}  note")
    for phase, r in results.items():
        note = f"extrapolated from {r['queries']} queries" if r["extrapolated"] else ""
        if phase in TARGETS and not args.quick:
            note = f"target <= {TARGETS[phase]:.0f} s: {'met' if r['cpu_s'] <= TARGETS[phase] else 'MISSED'} (cpu)"
        print(
            f"{phase:<10} {r['wall_s']:>9.2f} {r['cpu_s']:>9.2f} {r['peak_mib']:>9.0f} {r['import_mib']:>7.0f} {r['inputs_mib']:>7.0f}  {note}"
        )
    for method in ("tda", "dmn"):
        loop = results.get(f"{method}-loop")
        if loop and method in results:
            print(
                f"{method}: per-query loop / blocked = {loop['cpu_s'] / results[method]['cpu_s']:.1f}x (cpu)"
            )
    peak = max(r["peak_mib"] for r in results.values())
    print(f"largest peak RSS {peak:.0f} MiB (target <= {PEAK_TARGET_MIB:.0f} MiB, inputs included)")
    print("import / inputs: the child's peak RSS after importing torch, and after building the inputs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000, help="queries in the stream")
    ap.add_argument("--C", type=int, default=1000, help="classes")
    ap.add_argument("--D", type=int, default=1024, help="feature dimensions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--loop-n", type=int, default=1000, help="stream prefix the TDA loop runs on")
    ap.add_argument("--dmn-loop-n", type=int, default=50, help="stream prefix the DMN-ZS loop runs on")
    ap.add_argument(
        "--phases", default=",".join(PHASES), help="comma-separated subset of " + ",".join(PHASES)
    )
    ap.add_argument("--quick", action="store_true", help="a small size for a smoke run")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object at the end")
    ap.add_argument("--_phase", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._phase:
        print(json.dumps(run_phase(args._phase, args)))
        return
    if args.quick:
        args.n, args.C, args.D, args.loop_n, args.dmn_loop_n = 600, 50, 32, 100, 50
    results = {phase: in_child(phase, args) for phase in args.phases.split(",")}
    report(results, args)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
