"""The search at scale: the rewritten search against a frozen copy of the previous implementation on
problems that use several chunks and blocks, the running product's drift bound, float64 counting of
float32 features, and chunk sizes from free memory."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from susx_cli.method import memory, search, tipx
from tests.method.frozen_search import min_max, self_mask
from tests.method.test_method import T, _problem, direct_triple_loop

# ----------------------------------------------------------------------------------------------------
# The previous implementation (susx 5700edb, method/search.py and tipx.query_terms), frozen as the
# reference: one fresh exp(-beta (1 - S)) or running product per (chunk, beta), index_add_ class sums.
# ----------------------------------------------------------------------------------------------------


def _old_query_terms(
    f, F, y, W, *, tau=0.5, logit_scale=100.0, normalize=False, exclude_self=False, self_offset=0, ranges=None
):
    C = W.shape[0]
    Z = tipx.zero_shot_logits(f, W, logit_scale)
    S = f @ F.T
    K = tipx.kl_matrix(tipx.signatures(f, W, tau), tipx.signatures(F, W, tau))
    mask = self_mask(S, self_offset) if exclude_self else None
    if ranges is None:
        ranges = (min_max(K, mask), min_max(S, mask))
    (k_min, k_max), (s_min, s_max) = ranges
    neg = -(
        torch.full_like(K, s_min)
        if k_max - k_min <= 0
        else (K - k_min) / (k_max - k_min) * (s_max - s_min) + s_min
    )
    if mask is not None:
        neg = neg * mask
    counts = tipx.class_sum(torch.ones_like(S) if mask is None else mask.to(S.dtype), y, C)
    kl_term = tipx.class_sum(neg, y, C)
    if normalize:
        kl_term = kl_term / counts.clamp_min(1)
    return SimpleNamespace(Z=Z, S=S, kl_term=kl_term, mask=mask, counts=counts)


def _old_support_ranges(f, F, W, tau=0.5, chunk=4096, exclude_self=False):
    q = tipx.signatures(F, W, tau)
    k_lo, k_hi, s_lo, s_hi = float("inf"), float("-inf"), float("inf"), float("-inf")
    for start in range(0, f.shape[0], chunk):
        fc = f[start : start + chunk]
        K = tipx.kl_matrix(tipx.signatures(fc, W, tau), q)
        S = fc @ F.T
        mask = self_mask(S, start) if exclude_self else None
        (a, b), (c, d) = min_max(K, mask), min_max(S, mask)
        k_lo, k_hi = min(k_lo, a), max(k_hi, b)
        s_lo, s_hi = min(s_lo, c), max(s_hi, d)
    return (k_lo, k_hi), (s_lo, s_hi)


def _old_beats(d: torch.Tensor, cls: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Class c beats the true class y under argmax-first-index: d > 0, or d == 0 with c < y."""
    return (d > 0) | ((d == 0) & (cls < true))


def _old_chunk_counts(
    Z: torch.Tensor,
    cache: torch.Tensor,
    K: torch.Tensor,
    yq: torch.Tensor,
    alphas: torch.Tensor,
    gammas: torch.Tensor,
    pair_chunk: int,
) -> torch.Tensor:
    """Correct queries of one chunk at every (alpha, gamma) for one beta: (A, G) int64."""
    q, C = Z.shape
    A, G = alphas.numel(), gammas.numel()
    cls = torch.arange(C, device=Z.device)
    rows = torch.arange(q, device=Z.device)
    a_c = torch.stack([alphas.min(), alphas.max()])
    g_c = torch.stack([gammas.min(), gammas.max()])
    corners = (
        Z[None, None]
        + a_c[:, None, None, None] * cache[None, None]
        + g_c[None, :, None, None] * K[None, None]
    )
    corners = corners.reshape(4, q, C)
    d = corners - corners[:, rows, yq][..., None]
    beats = _old_beats(d, cls[None, None, :], yq[None, :, None])  # (4, q, C)
    right_everywhere = ~beats.any(-1).any(0)
    wrong_everywhere = beats.all(0).any(-1)
    undecided = ~(right_everywhere | wrong_everywhere)
    counts = torch.full((A, G), int(right_everywhere.sum()), dtype=torch.int64, device=Z.device)
    if not bool(undecided.any()):
        return counts
    qi, ci = (beats.any(0) & undecided[:, None]).nonzero(as_tuple=True)
    yi = yq[qi]
    dz = Z[qi, ci] - Z[qi, yi]
    dc = cache[qi, ci] - cache[qi, yi]
    dk = K[qi, ci] - K[qi, yi]
    # For one alpha, each candidate's condition "c does not beat y", dz + dc alpha + dk gamma < 0 (<= 0 when
    # c > y), holds on a half-line of gamma. Their intersection is an interval of the sorted gamma grid,
    # found by binary search, so a query costs O(A log G) instead of a sweep over all A x G points.
    strict = ci < yi  # a tie goes to the lower index: then c beats y already at equality
    start = torch.zeros(q, A, dtype=torch.int64, device=Z.device)  # first winning gamma index
    stop = torch.full((q, A), G, dtype=torch.int64, device=Z.device)  # one past the last
    for s in range(0, qi.numel(), pair_chunk):
        sl = slice(s, s + pair_chunk)
        e = dz[sl, None] + dc[sl, None] * alphas[None, :]  # (p, A): the difference at gamma = 0
        k = dk[sl, None].expand_as(e)
        st = strict[sl, None].expand_as(e)
        t = -e / torch.where(k == 0, torch.ones_like(k), k)  # the gamma where the difference is 0
        flat = t.reshape(-1).contiguous()
        left = torch.searchsorted(gammas, flat, right=False).reshape(t.shape)  # gammas < t
        right = torch.searchsorted(gammas, flat, right=True).reshape(t.shape)  # gammas <= t
        # dk > 0: gamma < t (strict) or <= t; dk < 0: gamma > t (strict) or >= t; dk == 0: all or none.
        hi = torch.where(k > 0, torch.where(st, left, right), torch.full_like(left, G))
        lo = torch.where(k < 0, torch.where(st, right, left), torch.zeros_like(left))
        never = (k == 0) & torch.where(st, e >= 0, e > 0)
        hi = torch.where(never, torch.zeros_like(hi), hi)
        index = qi[sl, None].expand_as(hi)
        start.scatter_reduce_(0, index, lo, reduce="amax")
        stop.scatter_reduce_(0, index, hi, reduce="amin")
    rows_u = undecided.nonzero(as_tuple=True)[0]
    lo, hi = start[rows_u], stop[rows_u]  # (u, A)
    won = hi > lo
    a_idx = torch.arange(A, device=Z.device).expand_as(lo)
    diff = torch.zeros(A, G + 1, dtype=torch.int64, device=Z.device)
    ones = torch.ones_like(lo[won])
    diff.index_put_((a_idx[won], lo[won]), ones, accumulate=True)
    diff.index_put_((a_idx[won], hi[won]), -ones, accumulate=True)
    return counts + diff.cumsum(1)[:, :G]


def old_grid_search(
    f: torch.Tensor,
    yq: torch.Tensor,
    F: torch.Tensor,
    y: torch.Tensor,
    W: torch.Tensor,
    grid: search.Grid,
    *,
    tau: float = 0.5,
    logit_scale: float = 100.0,
    normalize: bool = False,
    exclude_self: bool = False,
    chunk: int = 2048,
    pair_chunk: int = 4096,
    progress=None,
) -> search.SearchResult:
    """Top-1 accuracy of TIP-X at every grid point; the best point (first in alpha, beta, gamma order).

    Tip-Adapter is the same search with gamma = [0]. ``exclude_self`` runs leave-one-out (f is F,
    yq is y). Z and the KL term are computed once per query chunk, the cache once per beta.
    """
    if not (grid.alpha and grid.beta and grid.gamma):
        raise ValueError("the grid has an empty axis")
    dtype, dev = f.dtype, f.device
    alphas = torch.tensor(grid.alpha, dtype=dtype, device=dev)
    # The gamma sweep needs an ascending grid; counts are put back in the grid's own order at the end.
    gammas, gamma_order = torch.sort(torch.tensor(grid.gamma, dtype=dtype, device=dev), stable=True)
    betas = list(grid.beta)
    counts = torch.zeros(len(grid.alpha), len(betas), len(grid.gamma), dtype=torch.int64, device=dev)
    ranges = None
    if f.shape[0] > chunk:
        ranges = _old_support_ranges(f, F, W, tau, chunk, exclude_self=exclude_self)
    # On a uniform beta grid, exp(-b_k (1 - S)) = exp(-b_{k-1} (1 - S)) * exp(-step (1 - S)).
    steps = [b2 - b1 for b1, b2 in zip(betas, betas[1:], strict=False)]
    uniform = len(steps) > 1 and all(math.isclose(s, steps[0], rel_tol=1e-9) for s in steps)
    for start in range(0, f.shape[0], chunk):
        fc, yc = f[start : start + chunk], yq[start : start + chunk]
        t = _old_query_terms(
            fc,
            F,
            y,
            W,
            tau=tau,
            logit_scale=logit_scale,
            normalize=normalize,
            exclude_self=exclude_self,
            self_offset=start,
            ranges=ranges,
        )
        one_minus_s = 1.0 - t.S
        if t.mask is not None:
            one_minus_s = one_minus_s.masked_fill(~t.mask, float("inf"))  # exp(-inf) = 0: pair left out
        A = None
        step_factor = torch.exp(-steps[0] * one_minus_s) if uniform else None
        for b, beta in enumerate(betas):
            if A is None or not uniform or b % 8 == 0:
                A = torch.exp(-beta * one_minus_s)  # exact now and then, so rounding cannot build up
            else:
                A = A * step_factor
            cache = tipx.class_sum(A, y, W.shape[0])
            if normalize:
                cache = cache / t.counts.clamp_min(1)
            counts[:, b, :] += _old_chunk_counts(t.Z, cache, t.kl_term, yc, alphas, gammas, pair_chunk)
            if progress is not None:
                progress.advance(len(grid.alpha) * len(grid.gamma) * fc.shape[0] / f.shape[0])
    unsorted = torch.empty_like(counts)
    unsorted[:, :, gamma_order] = counts
    counts = unsorted
    flat = int(torch.argmax(counts.flatten()))  # argmax returns the first maximum: the tie rule
    a, rest = divmod(flat, len(betas) * len(grid.gamma))
    b, g = divmod(rest, len(grid.gamma))
    return search.SearchResult(
        alpha=grid.alpha[a],
        beta=betas[b],
        gamma=grid.gamma[g],
        correct=int(counts.flatten()[flat]),
        total=int(f.shape[0]),
        counts=counts.cpu(),
    )


# ----------------------------------------------------------------------------------------------------
# The rewritten search equals the previous one at every grid point.
# ----------------------------------------------------------------------------------------------------

SCALE_GRID = search.Grid(
    search.reference_grid(0.1, 50, 6), search.reference_grid(1, 50, 24), search.reference_grid(0.1, 30, 9)
)  # 24 uniform betas: exact exponentials at 0 and 16, running products between


def _labels(kind: str, N: int, C: int) -> np.ndarray:
    if kind == "balanced":  # padded layout without padding
        return np.arange(N) % C
    if kind == "unequal":  # padded layout with empty slots
        return np.random.default_rng(1).permutation(
            np.concatenate([np.arange(C), np.random.default_rng(2).integers(0, C, N - C)])
        )
    return np.concatenate(
        [np.zeros(N - 2 * (C - 1), int), np.repeat(np.arange(1, C), 2)]
    )  # too unequal: index_add_


@pytest.mark.parametrize("kind", ["balanced", "unequal", "lopsided"])
@pytest.mark.parametrize("normalize", [False, True])
def test_counts_equal_the_previous_implementation_over_many_chunks(kind, normalize):
    f, yq, F, _, W = _problem(n=500, N=160, C=16, D=32, seed=3)
    y = _labels(kind, 160, 16)
    layout = search.ClassLayout.of(T(y), 16)
    assert (layout.slots is None) == (kind == "lopsided")
    assert kind != "unequal" or layout.columns > 160
    args = (T(f), T(yq), T(F), T(y), T(W), SCALE_GRID)
    old = old_grid_search(*args, normalize=normalize).counts
    assert old.min() < old.max()  # the grid matters: not a degenerate problem
    for chunk, block in ((97, 13), (500, 1), (1000, None)):  # several chunks and blocks; one of each
        new = search.grid_search(*args, normalize=normalize, chunk=chunk, block=block)
        assert torch.equal(new.counts, old)
    assert torch.equal(old_grid_search(*args, normalize=normalize, chunk=97).counts, old)


def test_leave_one_out_counts_equal_the_previous_implementation():
    _, _, F, _, W = _problem(N=300, C=12, D=32, seed=5)
    y = _labels("unequal", 300, 12)
    args = (T(F), T(y), T(F), T(y), T(W), SCALE_GRID)
    old = old_grid_search(*args, exclude_self=True, chunk=71).counts
    new = search.grid_search(*args, exclude_self=True, chunk=71, block=9)
    assert torch.equal(new.counts, old)


def test_chunks_sized_from_a_small_memory_budget_give_the_same_counts(monkeypatch):
    f, yq, F, y, W = _problem(n=400, N=120, C=12, D=32, seed=8)
    args = (T(f), T(yq), T(F), T(y), T(W), SCALE_GRID)
    whole = search.grid_search(*args)
    monkeypatch.setattr(memory, "CPU_CAP", 200_000)  # a few rows per chunk
    rows, block = search.chunk_plan(400, 120, 12, len(SCALE_GRID.beta), 120, torch.device("cpu"))
    assert 1 < rows < 100 and 1 <= block <= rows
    assert torch.equal(search.grid_search(*args).counts, whole.counts)


def test_nonpositive_betas_leave_excluded_pairs_out():
    # -beta * inf is nan (beta = 0) or +inf (beta < 0): the left-out pair must still contribute 0.
    _, _, F, y, W = _problem(N=48, C=4, seed=11)
    for betas in ([-1.0, 0.0, 3.0], [-2.0, 0.0, 2.0, 4.0]):  # exact only; uniform with a running product
        grid = search.Grid([0.1, 2.0, 9.0], betas, [0.1, 4.0])
        expected, best = direct_triple_loop(F, y, F, y, W, grid, exclude_self=True)
        got = search.grid_search(T(F), T(y), T(F), T(y), T(W), grid, exclude_self=True, chunk=13)
        assert (got.alpha, got.beta, got.gamma) == expected and got.correct == best


# ----------------------------------------------------------------------------------------------------
# The running product's drift bound.
# ----------------------------------------------------------------------------------------------------


def test_running_product_stays_within_its_drift_bound():
    """search.affinity_schedule's bound, against extended-precision exponentials on the reference grid."""
    u = 2.0**-53
    betas = search.REFERENCE["beta"]
    exact, step = search.affinity_schedule(betas)
    assert step is not None and sum(exact) == 13 and not exact[15] and exact[16]
    S = np.concatenate([[-1.0, 1.0, 0.0], np.random.default_rng(0).uniform(-1, 1, 3000)])
    x = 1.0 - S  # in [0, 2]
    # One class per column (width 1), so the per-class sums are the affinities themselves.
    layout = search.ClassLayout.of(torch.arange(x.size), x.size)
    out = torch.empty(len(betas), 1, x.size, dtype=torch.float64)
    search.cache_logits(T(x[None, :]).clone(), betas, layout, torch.zeros(1, dtype=torch.long), out, block=1)
    got = out[:, 0].numpy()
    xl = x.astype(np.longdouble)
    k0 = 0
    worst_ratio = 0.0
    for k, b in enumerate(betas):
        k0 = k if exact[k] else k0
        j = k - k0
        truth = np.exp(-np.longdouble(b) * xl)
        rel = np.abs((got[k].astype(np.longdouble) - truth) / truth).astype(np.float64)
        departure = abs(float(np.longdouble(b) - np.longdouble(betas[k0]) - j * np.longdouble(step)))
        # fresh exp's own error (argument rounding, one exp) + drift of j products + non-uniform grid + slack
        bound = u * (x * b + 2) + j * 3 * u + x * departure + u
        assert (rel <= bound).all(), (k, float(rel.max()), float(bound.max()))
        worst_ratio = max(worst_ratio, float((rel / bound).max()))
    assert 0.05 < worst_ratio <= 1  # the bound is not vacuous
    assert (
        u * (2 * 50 + 2) + 15 * 3 * u + 2 * 1e-13 < 1e-12
    )  # relative error of the cache: far below a count's margin


# ----------------------------------------------------------------------------------------------------
# float64 counting of float32 features.
# ----------------------------------------------------------------------------------------------------


def _low_margin_problem():
    """Classes 0 and 1 have identical support images and text embeddings that differ by 2^-20 in one
    coordinate; queries of class 1 lean towards it by 2^-40 of logit: a tie in float32, a win in float64."""
    tiny = 2.0**-20
    W = np.array([[1, 0, 0, 0], [1, tiny, 0, 0], [0, 0, 1, 0]], np.float32)
    F = np.array([[1, 0, 0, 0]] * 2 + [[1, 0, 0, 0]] * 2 + [[0, 0, 1, 0], [0, 0.6, 0.8, 0]], np.float32)
    y = np.array([0, 0, 1, 1, 2, 2])
    f = np.array([[1, tiny, 0, 0]] * 5 + [[0, 0, 1, 0], [0, 0.6, 0.8, 0], [0.6, 0, 0.8, 0]], np.float32)
    yq = np.array([1] * 5 + [2, 2, 2])
    return f, yq, F, y, W


def test_float32_features_are_counted_in_float64():
    f, yq, F, y, W = _low_margin_problem()
    grid = search.Grid([0.1, 5.0, 20.0], [1.0, 3.0, 5.0, 7.0], [0.1, 3.0, 12.0])
    # float32 arithmetic flips the low-margin queries: the previous search, fed float32, counts them wrong.
    f32 = [T(a) for a in (f, yq, F, y, W)]
    f64 = [T(a.astype(np.float64)) if a.dtype == np.float32 else T(a) for a in (f, yq, F, y, W)]
    old32 = old_grid_search(*f32, grid).counts
    old64 = old_grid_search(*f64, grid).counts
    assert (old64 - old32 == 5).all()
    got = search.grid_search(*f32, grid)
    assert torch.equal(got.counts, old64)
    for ai, a in enumerate(grid.alpha):
        for bi, b in enumerate(grid.beta):
            for gi, g in enumerate(grid.gamma):
                direct = tipx.logits(f64[0], f64[4], f64[2], f64[3], alpha=a, beta=b, gamma=g).argmax(1)
                assert int(got.counts[ai, bi, gi]) == int((direct == f64[1]).sum())


# ----------------------------------------------------------------------------------------------------
# Memory.
# ----------------------------------------------------------------------------------------------------


def test_chunk_rows_fit_the_budget():
    assert memory.chunk_rows(1000, 50_000, torch.device("cpu"), budget=1_000_000) == 1000
    assert memory.chunk_rows(1000, 10, torch.device("cpu"), budget=1_000_000) == 10
    assert memory.chunk_rows(10**9, 10, torch.device("cpu"), budget=1_000_000) == 1  # never zero
    assert 0 < memory.working_budget(torch.device("cpu")) <= memory.CPU_CAP
    assert memory.l2_cache_bytes() >= 64 << 10


def test_free_memory_without_psutil_reads_proc_meminfo(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil raises ImportError
    assert memory.available_bytes(torch.device("cpu")) > 0


def test_logits_in_chunks_from_a_small_budget_equal_one_chunk(monkeypatch):
    f, _, F, y, W = _problem(n=300, N=90, C=7)
    whole = tipx.logits(T(f), T(W), T(F), T(y), alpha=1.0, beta=2.0, gamma=3.0, chunk=10_000)
    monkeypatch.setattr(memory, "CPU_CAP", 100_000)
    assert tipx.logits_rows_per_chunk(300, 90, 7, torch.device("cpu")) < 100
    pieces = tipx.logits(T(f), T(W), T(F), T(y), alpha=1.0, beta=2.0, gamma=3.0)
    torch.testing.assert_close(whole, pieces, rtol=1e-12, atol=1e-12)


def test_exact_class_ties_go_to_the_lower_index():
    # Classes 1 and 2 are copies (same text embedding, same support images): every margin between them is
    # exactly 0, so class 1 wins every query of class 2, as argmax's first index does.
    f, yq, F, y, W = _problem(n=120, N=40, C=5, seed=7)
    W[2], F[y == 2] = W[1], F[y == 1]
    yq[np.flatnonzero(yq == 1)[::2]] = 2  # queries near the shared class, half of them labelled 2
    grid = search.Grid([0.5, 5.0, 20.0], [1.0, 6.0, 11.0], [0.1, 3.0, 12.0])
    expected, best = direct_triple_loop(f, yq, F, y, W, grid)
    got = search.grid_search(T(f), T(yq), T(F), T(y), T(W), grid, chunk=50)
    assert (got.alpha, got.beta, got.gamma) == expected and got.correct == best
    assert torch.equal(got.counts, old_grid_search(T(f), T(yq), T(F), T(y), T(W), grid).counts)


@pytest.mark.parametrize("alphas", [[0.0, 1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
def test_counting_is_exact_when_margins_are_exactly_zero(alphas):
    # Small-integer logits make every margin exact, and many exactly 0: at the rivals' bound, at grid
    # corners and where a rival's threshold falls on a grid gamma. Counts must equal argmax at every point.
    rng = np.random.default_rng(0)
    q, C, B = 400, 4, 3
    Z, kl = (T(rng.integers(-3, 4, (q, C)).astype(float)) for _ in range(2))
    caches = T(rng.integers(0, 4, (B, q, C)).astype(float))
    yq = T(rng.integers(0, C, q))
    gammas = T(np.array([0.0, 0.5, 1.0, 2.0, 3.0]))
    diffs = caches - caches.gather(2, yq[None, :, None].expand(B, q, 1))
    ranges = search.CacheLogits(caches, diffs.amin(0)[None], diffs.amax(0)[None])
    rivals = search.Rivals.of(ranges, Z, kl, yq, alphas, gammas)
    assert 0 < int(rivals.always_wrong.sum()) < q  # some queries are left out, not all
    for b in range(B):
        got = search.count_correct(caches[b], rivals, T(np.array(alphas)), gammas, pair_chunk=97)
        for ai, a in enumerate(alphas):
            for gi, g in enumerate(gammas.tolist()):
                direct = int(((Z + a * caches[b] + g * kl).argmax(1) == yq).sum())
                assert int(got[ai, gi]) == direct, (b, a, g)


@pytest.mark.parametrize("labels", ["unequal", "lopsided"])
def test_cache_logits_and_their_ranges_over_betas(labels):
    rng = np.random.default_rng(4)
    q, N, C = 30, 60, 6
    y = T(_labels(labels, N, C))
    S = rng.uniform(-1, 1, (q, N))
    yq = T(rng.integers(0, C, q))
    divide = T(rng.integers(1, 5, (q, C)).astype(float))
    layout = search.ClassLayout.of(y, C)
    x = layout.distances(T(S).clone(), None, torch.empty(q, layout.columns, dtype=torch.float64))
    betas = SCALE_GRID.beta
    got = search.cache_logits(
        x, betas, layout, yq, torch.empty(len(betas), q, C, dtype=torch.float64), 7, divide
    )
    direct = torch.stack([tipx.class_sum(tipx.affinity(T(S), b), y, C) / divide for b in betas])
    torch.testing.assert_close(got.values, direct, rtol=1e-13, atol=0)
    diffs = got.values - got.values.gather(2, yq[None, :, None].expand(len(betas), q, 1))
    assert torch.equal(got.diff_low, diffs.amin(0)) and torch.equal(got.diff_high, diffs.amax(0))


def test_negative_alphas_match_the_triple_loop():
    f, yq, F, y, W = _problem(n=150, N=60, C=6, seed=2)
    grid = search.Grid([-3.0, -0.5, 1.0], search.reference_grid(1, 50, 12), [0.1, 2.0, 6.0])
    expected, best = direct_triple_loop(f, yq, F, y, W, grid)
    got = search.grid_search(T(f), T(yq), T(F), T(y), T(W), grid, chunk=40, block=7)
    assert (got.alpha, got.beta, got.gamma) == expected and got.correct == best
    assert torch.equal(got.counts, old_grid_search(T(f), T(yq), T(F), T(y), T(W), grid).counts)
