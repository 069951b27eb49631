"""Benchmark: calibrate and predict at ImageNet size, against the hardware floor.

The paper's ImageNet protocol searches the 200,000-point reference grid (20 alphas x 200 betas x 50
gammas) over labelled queries with 16 support images for each of 1,000 classes. This script generates
random L2-normalised features of that size (n queries, N support, C classes, D dimensions; class
structure as in calibrate_speed.py) and measures, each in its own subprocess so that peak memory
(ru_maxrss of the child, read with wait4) belongs to one phase only:

- search: ``susx_cli.method.search.grid_search`` on the reference grid, float64, as `susx calibrate --val`
  runs it: seconds, configurations/s, peak RSS;
- floor: the same number of passes the search cannot avoid, timed alone: for every beta one exp and one
  per-class sum over n x N float64 values (row blocks of the fastest size tried, preallocated buffers,
  the fastest per-class sum), and the ratio search / floor (target: <= 3 on CPU);
- predict: ``tipx.logits('tip-x', ...)`` on --predict-n queries (default 50,000): seconds, peak RSS;
- with --compare-old N_OLD: the previous implementation (frozen in tests/method/test_search_scale.py) and the
  current one on the same problem with N_OLD queries, side by side, with their counts compared;
- with --name-only: the name-only searches over the N support images, as `susx calibrate` runs them without
  validation labels: leave-one-out (``grid_search(F, y, F, y, ..., exclude_self=True)``) and k-fold
  (``kfold.grid_search``, --folds folds), each with its cost per query (per support image) against the
  validation search's (per validation query), target <= 1.5x; with --compare-old-loo, the previous
  leave-one-out (frozen in tests/method/frozen_search.py) on the same support set too, counts compared.

--scale S multiplies n, N and C (not D) by S, so a loaded machine can run a smaller problem of the same
shape (16 support images per class).

    python benchmarks/imagenet_scale.py                       # n=10,000, N=16,000, C=1,000, D=1,024
    python benchmarks/imagenet_scale.py --n 50000             # the full protocol
    python benchmarks/imagenet_scale.py --n 500 --N 800 --C 50 --D 64 --predict-n 2000   # smoke run
    python benchmarks/imagenet_scale.py --compare-old 2000 --skip-predict
    python benchmarks/imagenet_scale.py --name-only --skip-predict            # loo and k-fold beside val
    python benchmarks/imagenet_scale.py --name-only --skip-predict --scale 0.25

Every phase uses --threads torch threads (default 1: steadiest on shared cores; 0 = torch's default).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_problem(n: int, N: int, C: int, D: int, seed: int, rows: int = 4096):
    """Random normalised float64 features with class structure, generated in row chunks so that the
    generator's temporaries stay small beside the result: f (n, D), yq (n,), F (N, D), y (N,), W (C, D)."""
    rng = np.random.default_rng(seed)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    # As calibrate_speed.py: a shared direction keeps cosines CLIP-like; classes differ by a small part.
    common = unit(rng.normal(size=(1, D)))
    centres = unit(rng.normal(size=(C, D)))
    delta, img_noise, txt_noise = 0.2, 0.045, 0.011
    W = torch.from_numpy(unit(common + delta * centres + txt_noise * rng.normal(size=(C, D))))
    y = np.arange(N) % C
    yq = rng.integers(0, C, n)

    def images(labels):
        out = torch.empty(len(labels), D, dtype=torch.float64)
        for s in range(0, len(labels), rows):
            lab = labels[s : s + rows]
            block = common + delta * centres[lab] + img_noise * rng.normal(size=(len(lab), D))
            out[s : s + rows] = torch.from_numpy(unit(block))
        return out

    return images(yq), torch.from_numpy(yq), images(y), torch.from_numpy(y), W


def reference():
    from susx_cli.method.search import REFERENCE, Grid

    return Grid(REFERENCE["alpha"], REFERENCE["beta"], REFERENCE["gamma"])


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ----------------------------------------------------------------------------------------------------
# Phases, each in its own subprocess.
# ----------------------------------------------------------------------------------------------------


def phase_search(args, old: bool = False) -> dict:
    from susx_cli.method import search

    f, yq, F, y, W = make_problem(args.n, args.N, args.C, args.D, args.seed)
    grid = reference()
    out = {"rss_inputs_mib": rss_mib()}
    if old:
        sys.path.insert(0, ROOT)
        from tests.method.test_search_scale import old_grid_search as run
    else:
        run = search.grid_search
        layout = search.ClassLayout.of(y, args.C)
        out["plan"] = search.chunk_plan(args.n, args.N, args.C, len(grid.beta), layout.columns, f.device)
    t0, c0 = time.perf_counter(), time.process_time()
    r = run(f, yq, F, y, W, grid)
    out.update(
        seconds=time.perf_counter() - t0,
        cpu_seconds=time.process_time() - c0,
        configs=grid.size,
        choice=[r.alpha, r.beta, r.gamma],
        best=r.correct,
    )
    if args.counts_out:
        np.save(args.counts_out, r.counts.numpy())
    return out


def phase_name_only(args, mode: str) -> dict:
    """Leave-one-out ("loo", or "loo-old": the frozen previous implementation) or k-fold ("kfold") over
    the support set of the problem."""
    from susx_cli.method import kfold, search

    _, _, F, y, W = make_problem(1, args.N, args.C, args.D, args.seed)
    grid = reference()
    out = {"rss_inputs_mib": rss_mib()}
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "kfold":
        r = kfold.grid_search(F, y, W, grid, kfold.stratified_folds(y, args.folds, 0, args.C))
    else:
        if mode == "loo-old":
            sys.path.insert(0, ROOT)
            from tests.method.frozen_search import grid_search as run
        else:
            run = search.grid_search
        r = run(F, y, F, y, W, grid, exclude_self=True)
    out.update(
        seconds=time.perf_counter() - t0,
        cpu_seconds=time.process_time() - c0,
        configs=grid.size,
        choice=[r.alpha, r.beta, r.gamma],
        best=r.correct,
        queries=args.N,
    )
    if args.counts_out:
        np.save(args.counts_out, r.counts.numpy())
    return out


def phase_floor(args) -> dict:
    """One exp and one per-class sum per beta over n x N float64 values, nothing else.

    The values are a (rows, N) block of distances in [0, 2] in the class layout of a balanced support set,
    passed over n / rows times per beta in row blocks of preallocated buffers; the block size is the
    fastest of a few, tried first on a few betas (the search's own block is one of them).
    """
    from susx_cli.method import search

    C, m = args.C, math.ceil(args.N / args.C)
    B = len(reference().beta)
    rows, search_block = search.chunk_plan(args.n, args.N, C, B, C * m, torch.device("cpu"))
    x = torch.rand(min(rows, args.n), C * m, dtype=torch.float64).mul_(2.0)
    sums = torch.empty(x.shape[0], C, dtype=torch.float64)
    ones = torch.ones(m, dtype=torch.float64)

    def passes(q: int, block: int, betas: int) -> None:
        a = torch.empty(min(block, q), C * m, dtype=torch.float64)
        for r0 in range(0, q, block):
            xb = x[r0 : min(r0 + block, q)]
            ab = a[: xb.shape[0]]
            for _ in range(betas):
                torch.exp(xb, out=ab)
                torch.mv(ab.view(-1, m), ones, out=sums[r0 : r0 + xb.shape[0]].view(-1))

    trials = {}
    for block in sorted({2, 4, 8, 16, 32, search_block}):
        t0 = time.perf_counter()
        passes(min(64, x.shape[0]), block, 20)
        trials[block] = time.perf_counter() - t0
    block = min(trials, key=trials.get)
    out = {"rss_inputs_mib": rss_mib(), "plan": [rows, block], "elements": args.n * C * m * B}
    t0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, args.n, rows):
        passes(min(rows, args.n - start), block, B)
    out.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)
    return out


def phase_predict(args) -> dict:
    from susx_cli.method import tipx

    f, _, F, y, W = make_problem(args.predict_n, args.N, args.C, args.D, args.seed)
    out = {
        "rss_inputs_mib": rss_mib(),
        "rows": tipx.logits_rows_per_chunk(args.predict_n, args.N, args.C, f.device),
    }
    t0, c0 = time.perf_counter(), time.process_time()
    logits = tipx.logits(f, W, F, y, alpha=10.0, beta=5.5, gamma=0.5)
    out.update(
        seconds=time.perf_counter() - t0,
        cpu_seconds=time.process_time() - c0,
        n=args.predict_n,
        finite=bool(torch.isfinite(logits).all()),
    )
    return out


def run_phase(args) -> dict:
    torch.set_num_threads(args.threads)
    if args.phase == "search":
        return phase_search(args)
    if args.phase == "old":
        return phase_search(args, old=True)
    if args.phase == "floor":
        return phase_floor(args)
    if args.phase in ("loo", "loo-old", "kfold"):
        return phase_name_only(args, args.phase)
    return phase_predict(args)


def spawn(args, phase: str, n: int | None = None, counts_out: str = "") -> dict:
    """Run one phase in a fresh interpreter; add the child's ru_maxrss as wait4 reports it."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_phase", phase]
    for k in ("N", "C", "D", "seed", "threads", "predict_n", "folds"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    cmd += ["--n", str(n or args.n)]
    if counts_out:
        cmd += ["--_counts-out", counts_out]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"phase {phase} failed (exit {code})")
    result = json.loads(text.strip().splitlines()[-1])
    result.update(
        peak_mib=usage.ru_maxrss / 1024.0, user_s=usage.ru_utime, sys_s=usage.ru_stime, minflt=usage.ru_minflt
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--n", type=int, default=10_000, help="validation queries of the search (50000: the full protocol)"
    )
    ap.add_argument("--N", type=int, default=16_000, help="support images (16 per class)")
    ap.add_argument("--C", type=int, default=1_000, help="classes")
    ap.add_argument("--D", type=int, default=1_024, help="embedding dimension")
    ap.add_argument("--predict-n", type=int, default=50_000, help="queries of the predict phase")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads of every phase (0: torch's default)"
    )
    ap.add_argument(
        "--compare-old",
        type=int,
        default=0,
        metavar="N_OLD",
        help="also run the previous and the current search on N_OLD queries, side by side",
    )
    ap.add_argument(
        "--name-only", action="store_true", help="also leave-one-out and k-fold over the support set"
    )
    ap.add_argument(
        "--compare-old-loo", action="store_true", help="with --name-only: also the previous leave-one-out"
    )
    ap.add_argument("--folds", type=int, default=4, help="k of the k-fold phase (susx calibrate's default)")
    ap.add_argument(
        "--scale", type=float, default=1.0, help="multiply n, N, C and --predict-n by this (D stays)"
    )
    ap.add_argument("--skip-floor", action="store_true", help="no floor phase")
    ap.add_argument("--skip-search", action="store_true", help="no search and floor phases")
    ap.add_argument("--skip-predict", action="store_true", help="no predict phase")
    ap.add_argument("--_phase", dest="phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_counts-out", dest="counts_out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads <= 0:
        args.threads = torch.get_num_threads()
    if args.phase:
        print(json.dumps(run_phase(args)))
        return

    if args.scale != 1.0:
        for k in ("n", "N", "C", "predict_n", "compare_old"):
            setattr(args, k, max(1, round(getattr(args, k) * args.scale)) if getattr(args, k) else 0)
    grid_size = reference().size
    print(
        f"ImageNet-size TIP-X: N={args.N:,} support, C={args.C:,}, D={args.D:,}, float64, CPU, {args.threads} thread(s), "
        f"seed {args.seed}; reference grid {grid_size:,} configurations",
        flush=True,
    )
    print(
        "load average before (1, 5, 15 min): "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        + f" on {os.cpu_count()} cores (other processes skew the timings)",
        flush=True,
    )
    rows = []  # (label, result)
    search_r = floor_r = None
    if not args.skip_search:
        print(f"running: search, n={args.n:,} ...", flush=True)
        search_r = spawn(args, "search")
        rows.append((f"search n={args.n:,}", search_r))
        if not args.skip_floor:
            print(f"running: floor (exp + per-class sum per beta over n x N), n={args.n:,} ...", flush=True)
            floor_r = spawn(args, "floor")
            rows.append((f"floor n={args.n:,}", floor_r))
    name_only = {}
    if args.name_only:
        phases = ["loo", "kfold"] + (["loo-old"] if args.compare_old_loo else [])
        with tempfile.TemporaryDirectory(prefix="susx-scale-") as tmp:
            for phase in phases:
                print(f"running: {phase} over N={args.N:,} support images ...", flush=True)
                name_only[phase] = spawn(args, phase, counts_out=os.path.join(tmp, phase + ".npy"))
                rows.append((f"{phase} N={args.N:,}", name_only[phase]))
            if "loo-old" in name_only:
                loo_differ = int(
                    (np.load(os.path.join(tmp, "loo.npy")) != np.load(os.path.join(tmp, "loo-old.npy"))).sum()
                )
    if args.compare_old:
        with tempfile.TemporaryDirectory(prefix="susx-scale-") as tmp:
            new_path, old_path = os.path.join(tmp, "new.npy"), os.path.join(tmp, "old.npy")
            print(f"running: previous search, n={args.compare_old:,} ...", flush=True)
            old_r = spawn(args, "old", n=args.compare_old, counts_out=old_path)
            print(f"running: current search, n={args.compare_old:,} ...", flush=True)
            new_r = spawn(args, "search", n=args.compare_old, counts_out=new_path)
            differ = int((np.load(new_path) != np.load(old_path)).sum())
        rows += [
            (f"previous search n={args.compare_old:,}", old_r),
            (f"current search n={args.compare_old:,}", new_r),
        ]
    predict_r = None
    if not args.skip_predict:
        print(f"running: predict tip-x logits, n={args.predict_n:,} ...", flush=True)
        predict_r = spawn(args, "predict", n=args.predict_n)
        rows.append((f"predict logits n={args.predict_n:,}", predict_r))

    print()
    print(
        f"{'phase':<30}{'seconds':>10}{'CPU s':>9}{'configs/s':>12}{'peak RSS MiB':>14}{'(inputs)':>10}"
        f"{'user s':>9}{'sys s':>8}{'minor faults':>14}"
    )
    for label, r in rows:
        rate = f"{r['configs'] / r['seconds']:12,.0f}" if "configs" in r else f"{'':>12}"
        print(
            f"{label:<30}{r['seconds']:10.2f}{r['cpu_seconds']:9.2f}{rate}{r['peak_mib']:14.0f}"
            f"{r['rss_inputs_mib']:10.0f}{r['user_s']:9.1f}{r['sys_s']:8.1f}{r['minflt']:14,}"
        )
    print()
    if search_r is not None and floor_r is not None:
        ratio = search_r["seconds"] / floor_r["seconds"]
        cpu_ratio = search_r["cpu_seconds"] / floor_r["cpu_seconds"]
        print(f"search / floor: {ratio:.2f} by wall time, {cpu_ratio:.2f} by CPU time (target <= 3)")
        print(
            f"chunk rows, block rows: search {search_r['plan']}, "
            f"floor {floor_r['plan']}; floor = {floor_r['elements']:,} exp + sum element passes"
        )
        print(
            f"search choice (alpha, beta, gamma) = ({', '.join(f'{v:.4f}' for v in search_r['choice'])}), "
            f"top-1 {search_r['best']}/{args.n} = {search_r['best'] / args.n:.4f}"
        )
    if search_r is not None:
        for phase, r in name_only.items():
            per_q, per_val = r["seconds"] / r["queries"], search_r["seconds"] / args.n
            cpu_q, cpu_val = r["cpu_seconds"] / r["queries"], search_r["cpu_seconds"] / args.n
            print(
                f"{phase}: {1000 * per_q:.2f} ms per support image against the validation search's "
                f"{1000 * per_val:.2f} ms per query: {per_q / per_val:.2f}x by wall time, "
                f"{cpu_q / cpu_val:.2f}x by CPU time (target <= 1.5); choice ("
                + ", ".join(f"{v:.4f}" for v in r["choice"])
                + f"), {r['best']}/{r['queries']} correct, peak {r['peak_mib']:.0f} MiB"
            )
    if "loo-old" in name_only:
        old, new = name_only["loo-old"], name_only["loo"]
        print(
            f"current vs previous leave-one-out: speed-up {old['seconds'] / new['seconds']:.1f}x by wall time, "
            f"{old['cpu_seconds'] / new['cpu_seconds']:.1f}x by CPU time, same choice: "
            f"{'YES' if old['choice'] == new['choice'] and old['best'] == new['best'] else 'NO'}, "
            f"grid points whose count differs: {loo_differ} of {grid_size:,}"
        )
    if args.compare_old:
        same = old_r["choice"] == new_r["choice"] and old_r["best"] == new_r["best"]
        print(
            f"current vs previous search at n={args.compare_old:,}: speed-up {old_r['seconds'] / new_r['seconds']:.1f}x "
            f"by wall time, {old_r['cpu_seconds'] / new_r['cpu_seconds']:.1f}x by CPU time, "
            f"same choice: {'YES' if same else 'NO'}, grid points whose count differs: {differ} of {grid_size:,}"
        )
    if predict_r is not None:
        print(
            f"predict: {predict_r['n']:,} queries in {predict_r['seconds']:.1f} s, {predict_r['rows']} rows per chunk, "
            f"peak {predict_r['peak_mib']:.0f} MiB, finite logits: {predict_r['finite']}"
        )
    print("load average after (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(
        "seconds: wall time of the timed region; CPU s: its process CPU time (all threads), steadier on shared cores."
    )
    print("peak RSS: ru_maxrss of each phase's own process; '(inputs)': its peak after building the inputs;")
    print("user s, sys s, minor faults: the whole child process (interpreter start and inputs included).")


if __name__ == "__main__":
    main()
