"""Benchmark: the project's vectorised TIP-X grid search against a port of the reference's triple loop.

The reference (vishaal27/SuS-X, tipx.py ``hparam_search``) loops over alpha, then beta, recomputing for
every (alpha, beta) the affinity ``val @ support^T``, the cache logits ``exp(-beta (1 - affinity)) @ L``,
the zero-shot logits ``100 f W`` and the rescaled KL term ``(-K') @ L``; then over gamma it builds
``clip + kl * gamma + cache * alpha``, takes top-1 accuracy and keeps the configuration if it is
strictly better. ``loop_search`` below is a direct port of that loop in torch on the CPU.

The full reference grid (20 x 200 x 50 = 200,000 configurations) takes many minutes in the loop, so the
loop runs on a sub-grid (every alpha, ``--loop-betas`` evenly spaced betas, every gamma) and its
throughput is extrapolated. The project search runs on exactly that sub-grid (same choice? same
accuracy at every grid point?) and on the full reference grid (throughput), best of ``--repeats``.

Each measurement runs in its own Python subprocess, which regenerates the same inputs from the seed,
so each peak memory figure (ru_maxrss) belongs to one measurement only.

    python benchmarks/calibrate_speed.py                 # defaults: n=2000, N=1600, C=100, D=512
    python benchmarks/calibrate_speed.py --loop-betas 4  # quicker
    python benchmarks/calibrate_speed.py --threads 0     # torch's default thread count (all cores)

On a machine whose cores are shared with other work, multi-threaded runs are much slower and noisier
(oversubscribed OpenMP threads wait on each other), hence the default of one thread for both searches;
compare figures from one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def make_problem(n: int, N: int, C: int, D: int, seed: int, dtype: torch.dtype):
    """Synthetic L2-normalised features with class structure (CLIP-like cosines, zero-shot top-1 ~0.5).

    Returns f (n, D) validation features, yq (n,), F (N, D) support features, y (N,), W (C, D).
    """
    rng = np.random.default_rng(seed)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    # A shared direction keeps every cosine well above 0 (as in CLIP); classes differ by a small part.
    common = unit(rng.normal(size=(1, D)))
    centres = unit(rng.normal(size=(C, D)))
    delta, img_noise, txt_noise = 0.2, 0.045, 0.011  # per-coordinate noise; zero-shot top-1 about 0.5
    W = unit(common + delta * centres + txt_noise * rng.normal(size=(C, D)))
    y = np.arange(N) % C
    yq = rng.integers(0, C, n)
    F = unit(common + delta * centres[y] + img_noise * rng.normal(size=(N, D)))
    f = unit(common + delta * centres[yq] + img_noise * rng.normal(size=(n, D)))
    T = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dtype)  # noqa: E731
    return T(f), torch.from_numpy(yq), T(F), torch.from_numpy(y), T(W)


def reference_grid(start: float, stop: float, steps: int) -> list[float]:
    return [start + i * (stop - start) / steps for i in range(steps)]


def sub_betas(betas: list[float], k: int) -> list[float]:
    """k betas evenly spaced (constant stride) over the reference's 200."""
    k = max(1, min(k, len(betas)))
    stride = len(betas) // k
    return betas[::stride][:k]


# ----------------------------------------------------------------------------------------------------
# The reference loop, ported (top-1 only; the reference also computes top-5 inside the gamma loop).
# ----------------------------------------------------------------------------------------------------


def scale_(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The reference's min-max rescale of x onto the range of target."""
    y = (x - x.min()) / (x.max() - x.min())
    y = y * (target.max() - target.min())
    return y + target.min()


def kl_divergences(f: torch.Tensor, F: torch.Tensor, W: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """K[i, j] = KL(p_i || q_j), p = softmax(f W^T / tau), q = softmax(F W^T / tau) (computed once)."""
    p = torch.softmax(f @ W.T / tau, dim=-1)
    q = torch.softmax(F @ W.T / tau, dim=-1)
    log_p, log_q = p.clamp_min(1e-30).log(), q.clamp_min(1e-30).log()
    return (p * log_p).sum(-1, keepdim=True) - p @ log_q.T


def loop_search(f, yq, F, y, W, alphas, betas, gammas, tau=0.5):
    """Direct port of the reference's hparam_search: alpha, then beta, then gamma; strict '>' keeps the first.

    Returns (choice, best_correct, correct_counts[A, B, G], setup_seconds, loop_seconds).
    """
    t0 = time.perf_counter()
    kl_divs_sim = kl_divergences(f, F, W, tau)
    one_hot = torch.nn.functional.one_hot(y, W.shape[0]).to(f.dtype)
    support_t = F.T.contiguous()  # train_images_features_agg: D x N
    zeroshot_weights = W.T.contiguous()  # D x C
    setup = time.perf_counter() - t0
    counts = torch.zeros(len(alphas), len(betas), len(gammas), dtype=torch.int64)
    best, choice = 0, (0.0, 0.0, 0.0)
    t0 = time.perf_counter()
    for ai, alpha in enumerate(alphas):
        for bi, beta in enumerate(betas):
            new_knowledge = f @ support_t
            cache_logits = ((-1) * (beta - beta * new_knowledge)).exp() @ one_hot
            clip_logits = 100.0 * f @ zeroshot_weights
            neg_affs = scale_(kl_divs_sim, new_knowledge)
            kl_logits = (-neg_affs) @ one_hot
            for gi, gamma in enumerate(gammas):
                tipx_logits = clip_logits + kl_logits * gamma + cache_logits * alpha
                correct = int((tipx_logits.argmax(1) == yq).sum())
                counts[ai, bi, gi] = correct
                if correct > best:
                    best, choice = correct, (alpha, beta, gamma)
    return choice, best, counts, setup, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------------
# Phases, each run in its own subprocess.
# ----------------------------------------------------------------------------------------------------


def grids(args):
    alphas = reference_grid(0.1, 50.0, 20)
    betas = reference_grid(1.0, 50.0, 200)
    gammas = reference_grid(0.1, 30.0, 50)
    return alphas, betas, gammas


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_phase(args) -> dict:
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.phase_dtype or args.dtype]
    f, yq, F, y, W = make_problem(args.n, args.N, args.C, args.D, args.seed, dtype)
    alphas, betas, gammas = grids(args)
    if args.phase in ("loop", "loop-timing", "project-sub"):
        betas = sub_betas(betas, args.loop_betas)
    out: dict = {"phase": args.phase, "dtype": str(dtype).replace("torch.", ""), "rss_inputs_mib": rss_mib()}
    if args.phase == "loop-timing":  # throughput only, a few (alpha, beta) pairs
        alphas = alphas[: max(1, args.timing_pairs // len(betas))]
    if args.phase in ("loop", "loop-timing"):
        choice, best, counts, setup, secs = loop_search(f, yq, F, y, W, alphas, betas, gammas)
        pairs = len(alphas) * len(betas)
        out.update(setup_s=setup, loop_s=secs, pairs=pairs, configs=pairs * len(gammas))
    else:
        from susx_cli.method.search import Grid, grid_search

        grid = Grid(alphas, betas, gammas)
        times = []
        for _ in range(max(1, args.repeats)):  # best of k: other processes on the machine only slow it down
            t0 = time.perf_counter()
            r = grid_search(f, yq, F, y, W, grid)
            times.append(time.perf_counter() - t0)
        choice, best, counts = (r.alpha, r.beta, r.gamma), r.correct, r.counts
        out.update(seconds=min(times), all_seconds=times, configs=grid.size)
    out.update(choice=list(choice), best=best, n=args.n, rss_peak_mib=rss_mib())
    if args.counts_out:
        np.save(args.counts_out, counts.numpy())
    return out


def spawn(args, phase: str, dtype: str | None = None, counts_out: str = "") -> dict:
    """Run one phase in a fresh interpreter; also return the child's ru_maxrss as seen by wait4."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_phase", phase]
    for k in ("n", "N", "C", "D", "seed", "dtype", "loop_betas", "timing_pairs", "threads", "repeats"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    if dtype:
        cmd += ["--_phase-dtype", dtype]
    if counts_out:
        cmd += ["--_counts-out", counts_out]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out_text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"phase {phase} failed (exit {proc.returncode})")
    result = json.loads(out_text.strip().splitlines()[-1])
    result["child_maxrss_mib"] = usage.ru_maxrss / 1024.0
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="validation queries")
    ap.add_argument("--N", type=int, default=1600, help="support images")
    ap.add_argument("--C", type=int, default=100, help="classes")
    ap.add_argument("--D", type=int, default=512, help="embedding dimension")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float64",
        help="dtype of both searches (float64 is what `susx calibrate` uses)",
    )
    ap.add_argument(
        "--loop-betas",
        type=int,
        default=20,
        help="betas in the sub-grid the loop runs on (x 20 alphas x 50 gammas)",
    )
    ap.add_argument(
        "--timing-pairs",
        type=int,
        default=20,
        help="(alpha, beta) pairs of an extra float32 loop run, for its throughput (0: skip)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads of both searches (0: torch's default, all cores); 1 is steadiest on shared cores",
    )
    ap.add_argument("--repeats", type=int, default=3, help="project searches: best of this many runs")
    ap.add_argument("--skip-full", action="store_true", help="do not run the project search on the full grid")
    ap.add_argument("--_phase", dest="phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_phase-dtype", dest="phase_dtype", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_counts-out", dest="counts_out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads <= 0:
        args.threads = torch.get_num_threads()
    if args.phase:
        print(json.dumps(run_phase(args)))
        return

    import tempfile

    alphas, betas, gammas = grids(args)
    sub = sub_betas(betas, args.loop_betas)
    full_configs = len(alphas) * len(betas) * len(gammas)
    print(
        f"TIP-X hyperparameter search: n={args.n} validation, N={args.N} support, C={args.C}, D={args.D}, "
        f"CPU, {args.threads} threads, {args.dtype}, seed {args.seed}",
        flush=True,
    )
    print(
        "load average before (1, 5, 15 min): "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        + f" on {os.cpu_count()} cores (other processes skew the timings)",
        flush=True,
    )
    print(
        f"sub-grid: {len(alphas)} alphas x {len(sub)} betas {[round(b, 3) for b in sub]} x {len(gammas)} gammas"
        f" = {len(alphas) * len(sub) * len(gammas):,} configs; full reference grid = {full_configs:,}",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="susx-bench-") as tmp:
        print("running: reference loop port on the sub-grid ...", flush=True)
        loop = spawn(args, "loop", counts_out=os.path.join(tmp, "loop.npy"))
        print("running: project grid_search on the sub-grid ...", flush=True)
        psub = spawn(args, "project-sub", counts_out=os.path.join(tmp, "psub.npy"))
        loop_counts, psub_counts = (
            np.load(os.path.join(tmp, "loop.npy")),
            np.load(os.path.join(tmp, "psub.npy")),
        )
        loop32 = None
        if args.timing_pairs > 0 and args.dtype != "float32":
            print(
                f"running: reference loop port in float32, {args.timing_pairs} pairs (timing only) ...",
                flush=True,
            )
            loop32 = spawn(args, "loop-timing", dtype="float32")
        pfull = None
        if not args.skip_full:
            print("running: project grid_search on the full reference grid ...", flush=True)
            pfull = spawn(args, "project-full")

    def loop_rate(r):  # configs/s of the full grid, extrapolated: setup once + 4000 (alpha, beta) pairs
        per_pair = r["loop_s"] / r["pairs"]
        full_s = r["setup_s"] + per_pair * len(alphas) * len(betas)
        return full_configs / full_s, full_s, r["configs"] / (r["setup_s"] + r["loop_s"])

    loop_full_rate, loop_full_s, loop_sub_rate = loop_rate(loop)
    psub_rate = psub["configs"] / psub["seconds"]
    rows = [
        (
            "reference loop port",
            args.dtype,
            "sub-grid",
            loop["configs"],
            loop["setup_s"] + loop["loop_s"],
            loop_sub_rate,
            loop,
        ),
        (
            "reference loop port",
            args.dtype,
            "full (extrapolated)",
            full_configs,
            loop_full_s,
            loop_full_rate,
            None,
        ),
    ]
    if loop32 is not None:
        r32, s32, _ = loop_rate(loop32)
        rows.append(
            (
                "reference loop port",
                "float32",
                f"full (extrap. from {loop32['pairs']} pairs)",
                full_configs,
                s32,
                r32,
                loop32,
            )
        )
    rows.append(
        ("susx grid_search", args.dtype, "sub-grid", psub["configs"], psub["seconds"], psub_rate, psub)
    )
    if pfull is not None:
        rows.append(
            (
                "susx grid_search",
                args.dtype,
                "full (measured)",
                full_configs,
                pfull["seconds"],
                pfull["configs"] / pfull["seconds"],
                pfull,
            )
        )

    print()
    print(
        f"{'search':<22}{'dtype':<9}{'grid':<30}{'configs':>9}{'seconds':>10}{'configs/s':>12}"
        f"{'peak RSS MiB':>14}{'(inputs)':>10}"
    )
    for name, dt, grid, n_cfg, secs, rate, r in rows:
        peak = f"{r['child_maxrss_mib']:14.0f}{r['rss_inputs_mib']:10.0f}" if r else f"{'':>14}{'':>10}"
        print(f"{name:<22}{dt:<9}{grid:<30}{n_cfg:>9,}{secs:>10.2f}{rate:>12,.0f}{peak}")

    print()
    print("speed-up of susx grid_search over the reference loop port (configs/s ratio):")
    print(f"  same sub-grid, both measured, {args.dtype}: {psub_rate / loop_sub_rate:10.1f}x")
    if pfull is not None:
        full_rate = pfull["configs"] / pfull["seconds"]
        print(
            f"  full grid, susx measured vs loop extrapolated, {args.dtype}: {full_rate / loop_full_rate:10.1f}x"
        )
        if loop32 is not None:
            print(
                f"  full grid, susx {args.dtype} measured vs loop float32 extrapolated: "
                f"{full_rate / loop_rate(loop32)[0]:10.1f}x"
            )
    print("  (target: >= 100x)")
    for name, r in (("sub-grid", psub), ("full grid", pfull)):
        if r is not None:
            print(
                f"  susx grid_search {name}, all {len(r['all_seconds'])} runs (s): "
                + ", ".join(f"{t:.2f}" for t in r["all_seconds"])
                + " (the table uses the fastest)"
            )

    print()
    same = tuple(loop["choice"]) == tuple(psub["choice"]) and loop["best"] == psub["best"]
    mismatched = int((loop_counts != psub_counts).sum())
    fmt = lambda c: "(" + ", ".join(f"{v:.4f}" for v in c) + ")"  # noqa: E731
    print("choice on the sub-grid (alpha, beta, gamma), top-1 on the validation split:")
    print(
        f"  reference loop port: {fmt(loop['choice'])}  {loop['best']}/{args.n} = {loop['best'] / args.n:.4f}"
    )
    print(
        f"  susx grid_search:    {fmt(psub['choice'])}  {psub['best']}/{args.n} = {psub['best'] / args.n:.4f}"
    )
    print(
        f"  same choice: {'YES' if same else 'NO'}; grid points whose correct count differs: "
        f"{mismatched} of {loop_counts.size:,}"
    )
    if pfull is not None:
        print(
            f"  susx on the full grid: {fmt(pfull['choice'])}  {pfull['best']}/{args.n} = {pfull['best'] / args.n:.4f}"
        )
    print()
    print("load average after (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(
        "peak RSS: ru_maxrss of each measurement's own process (wait4); '(inputs)' is that process's peak "
        "after importing torch and building the inputs, before the search."
    )


if __name__ == "__main__":
    main()
