"""Exhaustive (alpha, beta, gamma) grid search, vectorised, with the same choice as the reference loop.

For a fixed beta every logit difference ``logit_c - logit_y`` is linear in (alpha, gamma). So a query
whose true class wins at the four corners of the (alpha, gamma) rectangle wins at every grid point,
a query that one class beats at all four corners loses at every grid point, and only the rest, against
only the classes that win at some corner, need more work: per alpha, the gammas where the true class
wins form one interval, found by binary search on the sorted gamma grid. Counts of correct queries are
integers summed over query chunks, so the result does not depend on the chunk size, and ties keep the
first grid point in alpha-major, then beta, then gamma order, as the reference's strict '>' does.

What remains is about one pass over the (n, N) affinities per beta, arranged to run near that floor:
the support set is laid out class by class (so a per-class sum is a reduce over contiguous segments),
the affinities of consecutive betas are a running product (an exact exponential every few betas), rows
are processed in blocks small enough to stay in the CPU cache across all betas, every large buffer is
allocated once, and chunks are sized from free memory. Everything is counted in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from susx_cli.method import memory, tipx

EXACT_EVERY = 8  # running product for at most 7 betas between exact exponentials (drift bound: see affinity_schedule)
BLOCK_BYTES = 6 << 20  # CPU: rows per affinity block so that its three (rows, N) float64 buffers stay in cache
MAX_PADDING = 2.0  # class-padded layout only if it is at most this many times wider than the support set


def reference_grid(start: float, stop: float, steps: int) -> list[float]:
    """The reference's grid: start + i (stop - start) / steps for i in 0..steps-1 (stop excluded)."""
    return [start + i * (stop - start) / steps for i in range(steps)]


REFERENCE = {
    "alpha": reference_grid(0.1, 50.0, 20),
    "beta": reference_grid(1.0, 50.0, 200),
    "gamma": reference_grid(0.1, 30.0, 50),
}


@dataclass
class Grid:
    alpha: list[float]
    beta: list[float]
    gamma: list[float]

    @property
    def size(self) -> int:
        return len(self.alpha) * len(self.beta) * len(self.gamma)


@dataclass
class SearchResult:
    alpha: float
    beta: float
    gamma: float
    correct: int
    total: int
    counts: torch.Tensor = field(repr=False)  # (A, B, G) int64: correct queries per grid point

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


# ----------------------------------------------------------------------------------------------------
# Affinities: exp(-beta (1 - S)) summed per class, for every beta, near one pass per beta.
# ----------------------------------------------------------------------------------------------------


def affinity_schedule(betas: list[float], exact_every: int = EXACT_EVERY) -> tuple[list[bool], float | None]:
    """Which betas get an exact exponential (True) and which the running product, and the product's step.

    On a uniform ascending grid exp(-b_k x) = exp(-b_{k-1} x) exp(-h x), h = b_1 - b_0: one multiplication
    instead of an exponential. Drift bound, for x = 1 - S in [0, 2] and u = 2^-53: after j <= exact_every - 1
    products since the last exact value, the relative error against exp(-b_k x) exceeds the exact
    exponential's own (argument rounding x b_k u plus one exp rounding) by at most
    j (u_exp + u) + x |b_k - b_k0 - j h|, where u_exp <= 2u is exp's accuracy and the last term is the grid's
    departure from uniform spacing in floating point (a few ulps of b_k). tests/test_search_scale.py checks
    this bound against extended-precision exponentials on the reference grid.
    """
    steps = [b2 - b1 for b1, b2 in zip(betas, betas[1:], strict=False)]
    uniform = len(steps) > 1 and steps[0] > 0 and all(math.isclose(s, steps[0], rel_tol=1e-9) for s in steps)
    if not uniform:
        return [True] * len(betas), None
    return [k % exact_every == 0 for k in range(len(betas))], steps[0]


@dataclass
class ClassLayout:
    """Support columns arranged so that a per-class sum is a reduce over contiguous segments.

    Support images sorted by class, every class padded to the largest class size m with empty slots
    (distance +inf, affinity 0): support image j sits in column ``slots[j]`` of a (C * m)-wide row, and
    the per-class sum is a sum over the last axis of a (rows, C, m) view. When padding would more than
    double the width (very unequal classes), ``slots`` is None: original order and index_add_.
    """

    classes: int
    width: int  # m: columns per class, or 0 without padding
    slots: torch.Tensor | None
    labels: torch.Tensor

    @classmethod
    def of(cls, y: torch.Tensor, num_classes: int, max_padding: float = MAX_PADDING) -> ClassLayout:
        sizes = torch.bincount(y, minlength=num_classes)
        m = int(sizes.max()) if y.numel() else 0
        if m == 0 or num_classes * m > max_padding * y.numel():
            return cls(num_classes, 0, None, y)
        order = torch.argsort(y, stable=True)
        first = torch.cumsum(sizes, 0) - sizes  # first sorted position of each class
        rank = torch.arange(y.numel(), device=y.device) - first[y[order]]  # place within its class
        slots = torch.empty_like(y)
        slots[order] = y[order] * m + rank
        return cls(num_classes, m, slots, y)

    @property
    def columns(self) -> int:
        return self.classes * self.width if self.slots is not None else self.labels.numel()

    def distances(self, S: torch.Tensor, mask: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
        """x = 1 - S in this layout, +inf at padding and at left-out pairs (S is overwritten): (q, columns)."""
        x = S.neg_().add_(1.0)  # same rounding as 1 - S
        if mask is not None:
            x.masked_fill_(~mask, math.inf)  # exp(-beta inf) = 0: the pair is left out
        if self.slots is None:
            return out.copy_(x)
        return out.fill_(math.inf).index_copy_(1, self.slots, x)

    def class_sums(self, A: torch.Tensor, out: torch.Tensor, ones: torch.Tensor | None) -> torch.Tensor:
        """Per-class sums of the affinities A (rows, columns) into out (rows, C)."""
        if self.slots is None:
            return out.zero_().index_add_(1, self.labels, A)
        # A matrix-vector product with ones is the fastest contiguous segment sum torch has on CPU.
        return torch.mv(A.view(-1, self.width), ones, out=out.view(-1))


def class_affinity_sums(
    x: torch.Tensor, betas: list[float], layout: ClassLayout, out: torch.Tensor, block: int
) -> torch.Tensor:
    """out[k] = per-class sums of exp(-betas[k] x) for every beta: x (q, columns) -> out (B, q, C).

    Rows go in blocks of ``block``; each block runs through all betas while its buffers stay in cache.
    """
    exact, step = affinity_schedule(betas)
    q = x.shape[0]
    A = torch.empty(min(block, q), x.shape[1], dtype=x.dtype, device=x.device)
    E = torch.empty_like(A) if step is not None else None
    ones = torch.ones(max(layout.width, 1), dtype=x.dtype, device=x.device)
    for r0 in range(0, q, block):
        xb = x[r0 : r0 + block]
        a = A[: xb.shape[0]]
        if E is not None:
            e = torch.mul(xb, -step, out=E[: xb.shape[0]]).exp_()
        for k, beta in enumerate(betas):
            if exact[k]:
                torch.mul(xb, -beta, out=a).exp_()  # the bits of exp(-beta * (1 - S))
                if beta <= 0:  # -beta * inf is nan or +inf there: left-out and padding pairs stay 0
                    a.masked_fill_(xb == math.inf, 0.0)
            else:
                a.mul_(e)
            layout.class_sums(a, out[k, r0 : r0 + xb.shape[0]], ones)
    return out


# ----------------------------------------------------------------------------------------------------
# Counting correct queries at every (alpha, gamma) for one beta.
# ----------------------------------------------------------------------------------------------------


@dataclass
class Margins:
    """What counting needs about one query chunk besides the cache; every tensor (q, C).

    dz, dk: zero-shot and KL-term logits minus the true class's. top / bottom: dz plus the largest /
    smallest of gamma dk over the gamma range, -inf at the true class so it never counts as a rival.
    lower: c < y (a tie goes to the lower index, so class c beats y already at equality).
    alpha_range: the smallest and largest alpha.
    """

    yq: torch.Tensor
    dz: torch.Tensor
    dk: torch.Tensor
    top: torch.Tensor
    bottom: torch.Tensor
    lower: torch.Tensor
    alpha_range: tuple[float, float]

    @classmethod
    def of(
        cls, Z: torch.Tensor, kl: torch.Tensor, yq: torch.Tensor, alphas: list[float], gammas: torch.Tensor
    ) -> Margins:
        col = yq[:, None]
        dz, dk = Z - Z.gather(1, col), kl - kl.gather(1, col)
        g_lo, g_hi = dk * gammas[0], dk * gammas[-1]  # gammas ascending
        top = torch.maximum(g_lo, g_hi).add_(dz).scatter_(1, col, -math.inf)
        bottom = torch.minimum(g_lo, g_hi).add_(dz).scatter_(1, col, -math.inf)
        lower = torch.arange(Z.shape[1], device=Z.device)[None, :] < col
        return cls(yq, dz, dk, top, bottom, lower, (min(alphas), max(alphas)))


def _beats(d: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """Class c beats the true class y under argmax-first-index: d > 0, or d == 0 with c < y."""
    return (d > 0) | ((d == 0) & lower)


def count_correct(
    cache: torch.Tensor, m: Margins, alphas: torch.Tensor, gammas: torch.Tensor, pair_chunk: int, buf: torch.Tensor
) -> torch.Tensor:
    """Correct queries of one chunk at every (alpha, gamma) for one beta: (A, G) int64.

    cache: (q, C) cache logits of this beta; buf: (4, q', C) scratch with q' >= q.
    """
    q, C = cache.shape
    A, G = alphas.numel(), gammas.numel()
    dc, lo, hi, best = buf[0, :q], buf[1, :q], buf[2, :q], buf[3, :q]
    torch.sub(cache, cache.gather(1, m.yq[:, None]), out=dc)
    torch.mul(dc, m.alpha_range[0], out=lo)
    torch.mul(dc, m.alpha_range[1], out=hi)
    # Rounding is monotonic, so these are exactly the largest and smallest of (dz + gamma dk) + alpha dc
    # over the four corners; a class beats y at some corner iff it beats y at `best`, at all iff at `worst`.
    torch.maximum(lo, hi, out=best).add_(m.top)
    worst = torch.minimum(lo, hi, out=lo).add_(m.bottom)
    best_row, worst_row = best.amax(1), worst.amax(1)
    right = best_row < 0  # no rival reaches y at any corner: right at every grid point
    wrong = worst_row > 0  # a rival beats y at every corner: wrong at every grid point
    # The rest, exact zero margins included, goes through the sweep below, which applies the tie rule.
    counts = torch.full((A, G), int(right.sum()), dtype=torch.int64, device=cache.device)
    rows_u = (~(right | wrong)).nonzero(as_tuple=True)[0]
    if rows_u.numel() == 0:
        return counts
    ui, ci = _beats(best[rows_u], m.lower[rows_u]).nonzero(as_tuple=True)  # rivals that win at some corner
    qi = rows_u[ui]
    dz, dcp, dk = m.dz[qi, ci], dc[qi, ci], m.dk[qi, ci]
    strict = m.lower[qi, ci]
    # For one alpha, each rival's condition "c does not beat y", dz + dc alpha + dk gamma < 0 (<= 0 when
    # c > y), holds on a half-line of gamma. Their intersection is an interval of the sorted gamma grid,
    # found by binary search, so a query costs O(A log G) instead of a sweep over all A x G points.
    u = rows_u.numel()
    start = torch.zeros(u, A, dtype=torch.int64, device=cache.device)  # first winning gamma index
    stop = torch.full((u, A), G, dtype=torch.int64, device=cache.device)  # one past the last
    for s in range(0, ui.numel(), pair_chunk):
        sl = slice(s, s + pair_chunk)
        e = dz[sl, None] + dcp[sl, None] * alphas[None, :]  # (p, A): the difference at gamma = 0
        k = dk[sl, None].expand_as(e)
        st = strict[sl, None].expand_as(e)
        t = -e / torch.where(k == 0, torch.ones_like(k), k)  # the gamma where the difference is 0
        flat = t.reshape(-1).contiguous()
        left = torch.searchsorted(gammas, flat, right=False).reshape(t.shape)  # gammas < t
        right_i = torch.searchsorted(gammas, flat, right=True).reshape(t.shape)  # gammas <= t
        # dk > 0: gamma < t (strict) or <= t; dk < 0: gamma > t (strict) or >= t; dk == 0: all or none.
        hi_i = torch.where(k > 0, torch.where(st, left, right_i), torch.full_like(left, G))
        lo_i = torch.where(k < 0, torch.where(st, right_i, left), torch.zeros_like(left))
        never = (k == 0) & torch.where(st, e >= 0, e > 0)
        hi_i = torch.where(never, torch.zeros_like(hi_i), hi_i)
        index = ui[sl, None].expand_as(hi_i)
        start.scatter_reduce_(0, index, lo_i, reduce="amax")
        stop.scatter_reduce_(0, index, hi_i, reduce="amin")
    won = stop > start
    a_idx = torch.arange(A, device=cache.device).expand_as(start)
    diff = torch.zeros(A, G + 1, dtype=torch.int64, device=cache.device)
    ones = torch.ones_like(start[won])
    diff.index_put_((a_idx[won], start[won]), ones, accumulate=True)
    diff.index_put_((a_idx[won], stop[won]), -ones, accumulate=True)
    return counts + diff.cumsum(1)[:, :G]


# ----------------------------------------------------------------------------------------------------
# The search.
# ----------------------------------------------------------------------------------------------------


def chunk_plan(n: int, N: int, C: int, B: int, columns: int, device, budget: int | None = None) -> tuple[int, int]:
    """(query rows per chunk, rows per affinity block) for this problem and the free memory.

    Per query row a chunk holds S and K (2 N floats, in query_terms), the laid-out distances (columns),
    the cache logits of every beta (B C) and about a dozen (C) rows of margins and scratch.
    """
    per_row = 8 * (2 * N + columns + B * C + 12 * C)
    rows = memory.chunk_rows(per_row, n, device, budget)
    if getattr(device, "type", str(device)) == "cuda":
        return rows, rows  # a GPU wants big kernels, not cache blocking
    return rows, max(1, min(rows, BLOCK_BYTES // (3 * 8 * max(columns, 1))))


def grid_search(
    f: torch.Tensor,
    yq: torch.Tensor,
    F: torch.Tensor,
    y: torch.Tensor,
    W: torch.Tensor,
    grid: Grid,
    *,
    tau: float = 0.5,
    logit_scale: float = 100.0,
    normalize: bool = False,
    exclude_self: bool = False,
    chunk: int | None = None,
    block: int | None = None,
    pair_chunk: int = 4096,
    progress=None,
) -> SearchResult:
    """Top-1 accuracy of TIP-X at every grid point; the best point (first in alpha, beta, gamma order).

    Tip-Adapter is the same search with gamma = [0]. ``exclude_self`` runs leave-one-out (f is F,
    yq is y). Features may come in any float dtype: the search runs in float64, where a float32 rounding
    could flip a count. ``chunk`` (query rows at a time) and ``block`` (rows per affinity block) default
    to sizes from free memory and the CPU cache; they change speed and memory, never the result.
    """
    if not (grid.alpha and grid.beta and grid.gamma):
        raise ValueError("the grid has an empty axis")
    f, F, W = (t.to(torch.float64) for t in (f, F, W))
    dev, n, C = f.device, f.shape[0], W.shape[0]
    alphas = torch.tensor(grid.alpha, dtype=torch.float64, device=dev)
    # The gamma sweep needs an ascending grid; counts are put back in the grid's own order at the end.
    gammas, gamma_order = torch.sort(torch.tensor(grid.gamma, dtype=torch.float64, device=dev), stable=True)
    betas = list(grid.beta)
    layout = ClassLayout.of(y, C)
    rows, auto_block = chunk_plan(n, F.shape[0], C, len(betas), layout.columns, dev)
    rows, block = chunk or rows, block or auto_block
    log_q = tipx.log_signatures(F, W, tau)
    ranges = tipx.support_ranges(f, F, W, tau, rows, exclude_self=exclude_self, log_q=log_q) if n > rows else None
    q_max = min(rows, n)
    x_buf = torch.empty(q_max, layout.columns, dtype=torch.float64, device=dev)
    caches = torch.empty(len(betas), q_max, C, dtype=torch.float64, device=dev)
    scratch = torch.empty(4, q_max, C, dtype=torch.float64, device=dev)
    counts = torch.zeros(len(grid.alpha), len(betas), len(grid.gamma), dtype=torch.int64, device=dev)
    for start in range(0, n, rows):
        fc, yc = f[start : start + rows], yq[start : start + rows]
        q = fc.shape[0]
        t = tipx.query_terms(
            fc, F, y, W, tau=tau, logit_scale=logit_scale, normalize=normalize, exclude_self=exclude_self,
            self_offset=start, ranges=ranges, log_q=log_q,
        )
        x = layout.distances(t.S, t.mask, x_buf[:q])
        t.S = t.mask = None  # free the (q, N) tensors before the betas
        class_affinity_sums(x, betas, layout, caches[:, :q], block)
        margins = Margins.of(t.Z, t.kl_term, yc, grid.alpha, gammas)
        for b in range(len(betas)):
            cache = caches[b, :q]
            if normalize:
                cache.div_(t.counts.clamp_min(1))
            counts[:, b, :] += count_correct(cache, margins, alphas, gammas, pair_chunk, scratch)
            if progress is not None:
                progress.advance(len(grid.alpha) * len(grid.gamma) * q / n)
    unsorted = torch.empty_like(counts)
    unsorted[:, :, gamma_order] = counts
    counts = unsorted
    flat = int(torch.argmax(counts.flatten()))  # argmax returns the first maximum: the tie rule
    a, rest = divmod(flat, len(betas) * len(grid.gamma))
    b, g = divmod(rest, len(grid.gamma))
    return SearchResult(
        alpha=grid.alpha[a],
        beta=betas[b],
        gamma=grid.gamma[g],
        correct=int(counts.flatten()[flat]),
        total=n,
        counts=counts.cpu(),
    )
